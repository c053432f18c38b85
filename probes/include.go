package probes

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Bounds on probe-file composition: includes nest at most this deep and a
// spec reads at most this many files, so a mistaken include cannot make
// the agent read the disk without end.
const (
	maxIncludeDepth = 8
	maxIncludeFiles = 64
)

// loadSpecTree reads the probe file at path and, depth first, the files
// it includes (relative paths are relative to the including file), and
// returns one spec with all their probes: an included file's probes come
// before the including file's own, in include order. A file included
// twice (by two files) is read once; an include cycle is an error naming
// the chain. The merged spec is validated as a whole, so span names and
// symbols must be unique across the files and a parent may name a span of
// any of them.
func loadSpecTree(path string) (*Spec, error) {
	l := &includeLoader{seen: map[string]bool{}}
	probes, err := l.load(path, nil)
	if err != nil {
		return nil, err
	}
	offsets := l.offsets
	if offsets != "" && !filepath.IsAbs(offsets) {
		offsets = filepath.Join(filepath.Dir(path), offsets)
	}
	if len(l.files) == 1 {
		return &Spec{Path: path, Probes: probes, Files: l.files, Offsets: offsets}, nil
	}
	merged := &Spec{Path: fmt.Sprintf("%s (with %s)", path, strings.Join(l.files[1:], ", ")), Probes: probes, Files: l.files, Offsets: offsets}
	if err := ValidateSpec(merged); err != nil {
		return nil, err
	}
	merged.Path = path
	return merged, nil
}

// includeLoader tracks the files read while loading one spec.
type includeLoader struct {
	seen  map[string]bool
	files []string
	// offsets is the top file's offsets key (included files' are not
	// used: the offsets are of the whole spec).
	offsets string
}

// load reads one file and its includes; stack is the chain of absolute
// paths that included it.
func (l *includeLoader) load(path string, stack []string) ([]Probe, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("load probe spec %s: %w", path, err)
	}
	if i := slices.Index(stack, abs); i >= 0 {
		chain := append(slices.Clone(stack[i:]), abs)
		return nil, fmt.Errorf("%w: %s: include cycle %s; remove one of these includes", ErrInvalidSpec, path, strings.Join(chain, " -> "))
	}
	if l.seen[abs] {
		return nil, nil
	}
	if len(stack) > maxIncludeDepth {
		return nil, fmt.Errorf("%w: %s: includes nest deeper than %d files", ErrInvalidSpec, path, maxIncludeDepth)
	}
	if len(l.files) >= maxIncludeFiles {
		return nil, fmt.Errorf("%w: %s: a probe spec may read at most %d files", ErrInvalidSpec, path, maxIncludeFiles)
	}
	l.seen[abs] = true
	l.files = append(l.files, path)
	spec, err := readSpecFile(path)
	if err != nil {
		if len(stack) > 0 {
			return nil, fmt.Errorf("included from %s: %w", stack[len(stack)-1], err)
		}
		return nil, err
	}
	if len(stack) == 0 {
		l.offsets = spec.Offsets
	}
	var out []Probe
	for i, inc := range spec.Include {
		if inc == "" {
			return nil, fmt.Errorf("%w: %s: include[%d] is empty; name a probe file", ErrInvalidSpec, path, i)
		}
		if !filepath.IsAbs(inc) {
			inc = filepath.Join(filepath.Dir(path), inc)
		}
		probes, err := l.load(inc, append(stack, abs))
		if err != nil {
			return nil, err
		}
		out = append(out, probes...)
	}
	return append(out, spec.Probes...), nil
}

// SpecFiles lists the files a probe file's resolution depends on, for
// watching them: the file, the files it includes and, when it exists, its
// offsets file. A file that does not load lists only itself (the reload
// reports why).
func SpecFiles(path string) []string {
	spec, err := LoadSpec(path)
	if err != nil {
		return []string{path}
	}
	files := slices.Clone(spec.Files)
	off := spec.Offsets
	if off == "" {
		off = OffsetsPath(path)
	}
	if _, err := os.Stat(off); err == nil {
		files = append(files, off)
	}
	return files
}
