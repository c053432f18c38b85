package daemonset

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// stage is one FROM and the instructions after it.
type stage struct {
	image, name string
	body        []instruction
}

// parseDockerfile splits a Dockerfile into stages. It knows the syntax this repository uses
// (comments, backslash continuations, FROM ... AS name), not every BuildKit extension.
func parseDockerfile(src string) ([]stage, error) {
	var (
		stages []stage
		cur    strings.Builder
		start  int
	)
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			var s stage
			switch {
			case len(f) == 1:
				s.image = f[0]
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				s.image, s.name = f[0], f[2]
			default:
				return fmt.Errorf("line %d: FROM %s: want FROM IMAGE[:TAG] [AS NAME]", in.line, in.args)
			}
			stages = append(stages, s)
			return nil
		}
		if len(stages) == 0 {
			return fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
		return nil
	}
	for i, l := range strings.Split(src, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(t, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(t)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: the last instruction ends with a backslash", start)
	}
	return stages, nil
}

// pinned says whether an image reference names a fixed tag or a digest, not latest or none.
func pinned(image string) bool {
	if image == "scratch" || strings.Contains(image, "@sha256:") {
		return true
	}
	// The tag follows the last colon after the last slash (a registry port has a slash after).
	last := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(last, ":")
	return ok && tag != "" && tag != "latest"
}

// lintDockerfile returns every way the Dockerfile departs from what the agent image needs.
func lintDockerfile(src string) []string {
	stages, err := parseDockerfile(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if len(stages) < 2 {
		return []string{fmt.Sprintf("%d stage(s): want a multi-stage build (a Go builder, then a minimal runtime)", len(stages))}
	}
	names := map[string]bool{}
	for i, s := range stages {
		if !pinned(s.image) {
			bad("stage %d: FROM %s: pin the base image by tag or digest (not latest)", i, s.image)
		}
		if s.name != "" {
			names[s.name] = true
		}
		for _, in := range s.body {
			if in.cmd == "ADD" {
				for _, f := range strings.Fields(in.args) {
					if strings.Contains(f, "://") || strings.HasPrefix(f, "git@") {
						bad("line %d: ADD %s fetches from the network at build time: unverifiable; download in a RUN with a checksum, or COPY", in.line, f)
					}
				}
			}
		}
	}
	builder := stages[0]
	if !strings.HasPrefix(builder.image, "golang:1.26") || builder.name == "" {
		bad("first stage is FROM %s AS %q: want a named golang:1.26 builder", builder.image, builder.name)
	}
	static := false
	for _, in := range builder.body {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") && strings.Contains(in.args, "CGO_ENABLED=0") {
			static = true
		}
	}
	if !static {
		bad("the builder has no RUN CGO_ENABLED=0 go build: the runtime image has no libc, the binary must be static")
	}
	final := stages[len(stages)-1]
	base := final.image[strings.LastIndex(final.image, "/")+1:]
	if final.image != "scratch" && !(strings.Contains(final.image, "distroless/") && strings.HasPrefix(base, "static")) {
		bad("runtime stage FROM %s: want scratch or distroless static (a static binary needs nothing else)", final.image)
	}
	var user, entry, copied bool
	for _, in := range final.body {
		switch in.cmd {
		case "USER":
			user = in.args != ""
		case "ENTRYPOINT":
			entry = strings.HasPrefix(in.args, "[")
		case "COPY":
			if from, ok := strings.CutPrefix(in.args, "--from="); ok {
				name, _, _ := strings.Cut(from, " ")
				if names[name] {
					copied = true
				} else {
					bad("line %d: COPY --from=%s: no earlier stage has that name", in.line, name)
				}
			}
		case "RUN":
			bad("line %d: RUN in the runtime stage: a minimal base has no shell", in.line)
		}
	}
	if !copied {
		bad("the runtime stage does not COPY --from the builder")
	}
	if !user {
		bad("the runtime stage sets no USER")
	}
	if !entry {
		bad("the runtime stage has no exec-form ENTRYPOINT [\"...\"]")
	}
	return problems
}

func TestDockerfile(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(manifestDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range lintDockerfile(string(src)) {
		t.Error(p)
	}
	// The image's default command must be what the DaemonSet runs, so that the DaemonSet's
	// args and the image cannot disagree on the entry point.
	m := loadManifests(t, manifestDir)
	if c := mustAgentContainer(t, m.daemonSet); len(c.Command) != 0 {
		t.Errorf("the DaemonSet overrides the image's ENTRYPOINT with %q", c.Command)
	}
	// The context is the repository root: without exclusions it would ship build/ (the test
	// control plane, hundreds of MB) to the builder.
	ignore, err := os.ReadFile(filepath.Join(manifestDir, "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"build", ".git"} {
		if !slices.Contains(strings.Fields(string(ignore)), want) {
			t.Errorf("Dockerfile.dockerignore does not exclude %s", want)
		}
	}
	// What the Dockerfile builds must exist in the repository.
	for _, path := range []string{"../../cmd/routerscope", "../../go.mod", "../../go.sum"} {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("the Dockerfile builds from %s: %v", path, err)
		}
	}
}

func TestLintDockerfileRejects(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(manifestDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ old, new, want string }{
		"single stage":   {"COPY --from=build /out/routerscope", "COPY /out/routerscope", "does not COPY --from"},
		"unpinned":       {"golang:1.26 AS build", "golang AS build", "pin the base image"},
		"latest":         {"static-debian12:nonroot", "static-debian12:latest", "pin the base image"},
		"ADD URL":        {"COPY go.mod go.sum ./", "ADD https://example.invalid/x.tgz /x", "fetches from the network"},
		"cgo":            {"CGO_ENABLED=0 go build", "go build", "must be static"},
		"no user":        {"USER 65532:65532", "", "sets no USER"},
		"fat base":       {"gcr.io/distroless/static-debian12:nonroot", "debian:12", "want scratch or distroless static"},
		"unknown stage":  {"--from=build /out", "--from=builder /out", "no earlier stage"},
		"shell in final": {"EXPOSE 9464", "RUN true", "RUN in the runtime stage"},
	} {
		src := strings.Replace(string(good), c.old, c.new, 1)
		if src == string(good) {
			t.Fatalf("%s: %q is not in the Dockerfile any more; update the test", name, c.old)
		}
		problems := strings.Join(lintDockerfile(src), "\n")
		if !strings.Contains(problems, c.want) {
			t.Errorf("%s: lint said %q, want a problem containing %q", name, problems, c.want)
		}
	}
}
