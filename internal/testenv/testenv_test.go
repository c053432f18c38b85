package testenv

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestScrapeAndMetric reads a page with a counter, a gauge and labels.
func TestScrapeAndMetric(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	page := "# TYPE x_total counter\nx_total{rule=\"a\",pid=\"1\"} 3\nx_total{rule=\"b\"} 5\n# TYPE g gauge\ng 7\n"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(page)) })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	fams := Scrape(t, ln.Addr().String())
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
		ok     bool
	}{
		{"x_total", []string{"rule=a"}, 3, true},
		{"x_total", []string{"rule=b"}, 5, true},
		{"x_total", []string{"rule=a", "pid=1"}, 3, true},
		{"x_total", []string{"rule=c"}, 0, false},
		{"g", nil, 7, true},
		{"missing", nil, 0, false},
	} {
		if got, ok := Metric(fams, c.name, c.labels...); got != c.want || ok != c.ok {
			t.Errorf("Metric(%s, %v) = %v, %v; want %v, %v", c.name, c.labels, got, ok, c.want, c.ok)
		}
	}
}

// TestEventuallyReturnsWhenTheConditionHolds polls until the third call.
func TestEventuallyReturnsWhenTheConditionHolds(t *testing.T) {
	n := 0
	Eventually(t, "the third call", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}

// TestGoBuild builds a tiny program with an added environment variable.
func TestGoBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool: skipped in -short mode")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := GoBuild(t, Build{Pkg: ".", Out: filepath.Join(dir, "x"), Dir: dir, Env: []string{"CGO_ENABLED=0"}})
	if st, err := os.Stat(out); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("built %s: %v %v", out, st, err)
	}
}

// TestRequireRootNeverSkipsAsRoot: as root (and without -short) the gate
// lets the test run.
func TestRequireRootNeverSkipsAsRoot(t *testing.T) {
	if os.Geteuid() != 0 || testing.Short() {
		t.Skip("checks the gate as root without -short; here it skips, as it should")
	}
	ran := false
	t.Run("gated", func(t *testing.T) {
		RequireRoot(t, "this check")
		ran = true
	})
	if !ran {
		t.Fatal("RequireRoot skipped as root")
	}
}
