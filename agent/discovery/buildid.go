package discovery

import (
	"github.com/routerscope/routerscope/probes"
)

// BuildID identifies an executable exactly as probes.Binary.BuildID does
// ("go:", "gnu:" or "sha256:" and the id): two processes with the same build
// id run the same code at the same offsets.
func BuildID(path string) (string, error) {
	return probes.ReadBuildID(path)
}
