package agent

import (
	"errors"

	"github.com/routerscope/routerscope/probes"
)

// ErrBinaryChanged is what an Attacher returns (cmd/routerscope's
// resolution cache does) when the resolved program's build id is not the
// one the process runs: the file was replaced between the two reads, and
// offsets from it could be wrong for the process.
var ErrBinaryChanged = errors.New("the executable changed while it was being resolved; retrying later")

// BuildID identifies an executable exactly as probes.Binary.BuildID does
// ("go:", "gnu:" or "sha256:" and the id): two processes with the same build
// id run the same code at the same offsets.
func BuildID(path string) (string, error) {
	return probes.ReadBuildID(path)
}
