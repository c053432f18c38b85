package discovery

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	sy "github.com/routerscope/routerscope/internal/strictyaml"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/internal/readlimit"
)

// TargetConfigPath finds the config file a traced process was started
// with, so the guide's observability.tracing block can stay in the router's
// own config.yaml: the value of its --config (or -config) flag, else its
// CONFIG_PATH environment variable. A relative path is taken from the
// process's working directory, and the result is the path as the agent can
// open it, through procRoot/PID/root (which reaches into containers).
// source says where the path came from; ok is false when the process names
// no config file.
func TargetConfigPath(procRoot string, pid int) (path, source string, ok bool) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	name := ""
	if cmdline, err := readProc(filepath.Join(dir, "cmdline"), maxProcCmdline); err == nil {
		if v, found := configFlag(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")); found {
			name, source = v, "--config of pid "+strconv.Itoa(pid)
		}
	}
	if name == "" {
		if env, err := readProc(filepath.Join(dir, "environ"), maxProcEnviron); err == nil {
			for _, kv := range bytes.Split(env, []byte{0}) {
				if v, found := bytes.CutPrefix(kv, []byte("CONFIG_PATH=")); found && len(v) > 0 {
					name, source = string(v), "CONFIG_PATH of pid "+strconv.Itoa(pid)
				}
			}
		}
	}
	if name == "" {
		return "", "", false
	}
	if !filepath.IsAbs(name) {
		cwd, err := os.Readlink(filepath.Join(dir, "cwd"))
		if err != nil {
			return "", "", false
		}
		name = filepath.Join(cwd, name)
	}
	return filepath.Join(dir, "root", name), fmt.Sprintf("%s (%s)", source, name), true
}

// configFlag returns the value of a --config or -config flag in args.
func configFlag(args []string) (string, bool) {
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		for _, flag := range []string{"--config", "-config"} {
			if a == flag && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// HasAgentSection tells whether the file at path is YAML with a top-level
// observability: (or routerscope:) section. The target's config file is
// read only then: with no --config, the agent must not fail on, or watch,
// a file of another format or one that belongs to another program (the
// target's --config may be JSON, TOML, or a YAML of its own). The read is
// bounded by MaxConfigBytes.
func HasAgentSection(path string) bool {
	data, err := readlimit.File(path, config.MaxConfigBytes)
	if err != nil {
		return false
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return false
	}
	root := doc.Content[0]
	return sy.Lookup(root, "observability") != nil || sy.Lookup(root, "routerscope") != nil
}
