package agent

import (
	"os"
	"os/exec"
	"testing"

	"github.com/routerscope/routerscope/internal/testenv"
)

// TestProcessAliveZombie: a running child is alive; once it exited and
// before it is reaped (a zombie, read through procfs's stat parser) it is
// gone, and so is a pid with no process.
func TestProcessAliveZombie(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a child: %v", err)
	}
	defer cmd.Wait()
	pid := uint32(cmd.Process.Pid)
	if !processAlive(pid) {
		t.Fatal("running child reported gone")
	}
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the killed, unreaped child reported gone", func() bool { return !processAlive(pid) })
	if processAlive(1 << 30) {
		t.Error("pid with no process reported alive")
	}
}
