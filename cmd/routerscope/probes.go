package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"

	"github.com/routerscope/routerscope/probes"
)

const probesHelp = `routerscope probes - write and check probe files without attaching

Usage:
  routerscope probes list --binary PATH [--match REGEXP] [--json]
  routerscope probes list --binary PATH --type TYPE [--json]
  routerscope probes verify --binary PATH --probes FILE... [--json]
  routerscope probes extract --binary UNSTRIPPED --probes FILE... [--for STRIPPED]... [-o FILE]

list prints the binary's functions with their parameters and results (from
DWARF), marking those a probe cannot attach to (inlined at every call, no
body, assembly). --match keeps the names matching REGEXP. --type prints a
struct's fields with their offsets and sizes, to write field paths
(arg:req.Meta.User) without reading the source.

verify resolves every probe against the binary as the agent would, without
attaching or root: per probe the entry offset and the instruction under it
(emulated by the kernel, or single-stepped at the cost of a second trap),
every RET, where each value is read and its Go type, and every problem with
its fix. Exit status 1 when any probe has a problem, so a CI pipeline can
check a new build before it is deployed.

extract resolves the probes against an unstripped build (with DWARF) and
writes the locations to an offsets file keyed by the Go build id, for the
stripped build of the same code, which has no DWARF to resolve arguments and
fields with. A strip(1)ped copy keeps the build id and needs nothing more;
a build made with -ldflags='-s -w' has another build id: name it with
--for, and extract checks it is the same code (same function table) and
adds an entry for it. The file goes to -o, else the probe file's offsets:
key, else beside the first probe file as NAME.offsets.yaml, where the agent
looks for it when the binary it attaches to has no DWARF; an existing file
keeps its entries for other builds. The agent refuses a file without an
entry for the binary's build id, or extracted from other probes, and says so.

Exit status: 0 ok, 1 problems found or the binary unreadable, 2 usage or
invalid probe file.
`

// probesCmd dispatches the probes subcommands.
func (c cli) probesCmd(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, probesHelp)
		return exitUsage
	}
	switch args[0] {
	case "help", "--help", "-help", "-h":
		fmt.Fprint(c.stdout, probesHelp)
		return exitOK
	case "list":
		return c.probesList(args[1:])
	case "verify":
		return c.probesVerify(args[1:])
	case "extract":
		return c.probesExtract(args[1:])
	}
	fmt.Fprintf(c.stderr, "routerscope probes: unknown command %q: want list, verify or extract\n", args[0])
	return exitUsage
}

// probesFlags parses a probes subcommand's flags; ok is false when the
// command must stop with code.
func (c cli) probesFlags(name string, fs *flag.FlagSet, args []string) (code int, ok bool) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, probesHelp)
			return exitOK, false
		}
		fmt.Fprintf(c.stderr, "routerscope probes %s: %v\nRun 'routerscope probes help' for usage.\n", name, err)
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "routerscope probes %s: unexpected argument %q\n", name, fs.Arg(0))
		return exitUsage, false
	}
	return 0, true
}

func (c cli) probesList(args []string) int {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	binary := fs.String("binary", "", "")
	match := fs.String("match", "", "")
	typ := fs.String("type", "", "")
	asJSON := fs.Bool("json", false, "")
	if code, ok := c.probesFlags("list", fs, args); !ok {
		return code
	}
	if *binary == "" {
		fmt.Fprintln(c.stderr, "routerscope probes list: --binary is required")
		return exitUsage
	}
	var re *regexp.Regexp
	if *match != "" {
		var err error
		if re, err = regexp.Compile(*match); err != nil {
			fmt.Fprintf(c.stderr, "routerscope probes list: --match: %v\n", err)
			return exitUsage
		}
	}
	b, err := probes.OpenBinary(*binary)
	if err != nil {
		fmt.Fprintf(c.stderr, "routerscope probes list: %v\n", err)
		return exitRuntime
	}
	defer b.Close()
	if *typ != "" {
		ti, err := b.TypeLayout(*typ)
		if err != nil {
			fmt.Fprintf(c.stderr, "routerscope probes list: %v\n", err)
			return exitRuntime
		}
		if *asJSON {
			return c.writeJSON(ti)
		}
		fmt.Fprint(c.stdout, ti)
		return exitOK
	}
	fns, err := b.ListFunctions(re)
	if err != nil {
		fmt.Fprintf(c.stderr, "routerscope probes list: %v\n", err)
		return exitRuntime
	}
	if *asJSON {
		return c.writeJSON(fns)
	}
	for _, f := range fns {
		line := f.String()
		if !f.Probeable {
			line += "  [cannot probe: " + f.Note + "]"
		} else if f.Note != "" {
			line += "  [" + f.Note + "]"
		}
		fmt.Fprintln(c.stdout, line)
	}
	return exitOK
}

func (c cli) probesVerify(args []string) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	binary := fs.String("binary", "", "")
	var files listFlag
	fs.Var(&files, "probes", "")
	asJSON := fs.Bool("json", false, "")
	if code, ok := c.probesFlags("verify", fs, args); !ok {
		return code
	}
	if *binary == "" || len(files) == 0 {
		fmt.Fprintln(c.stderr, "routerscope probes verify: --binary and --probes are required")
		return exitUsage
	}
	spec, err := loadSpecs(files)
	if err != nil {
		fmt.Fprintf(c.stderr, "routerscope probes verify: %v\n", err)
		return exitUsage
	}
	b, err := probes.OpenBinary(*binary)
	if err != nil {
		fmt.Fprintf(c.stderr, "routerscope probes verify: %v\n", err)
		return exitRuntime
	}
	defer b.Close()
	rep, err := probes.Verify(b, spec)
	if err != nil {
		fmt.Fprintf(c.stderr, "routerscope probes verify: %v\n", err)
		return exitUsage
	}
	if *asJSON {
		if code := c.writeJSON(rep); code != exitOK {
			return code
		}
	} else {
		fmt.Fprint(c.stdout, rep)
	}
	if !rep.OK {
		return exitRuntime
	}
	return exitOK
}

// writeJSON prints v as indented JSON.
func (c cli) writeJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(c.stderr, "routerscope probes: write JSON: %v\n", err)
		return exitRuntime
	}
	return exitOK
}

func (c cli) probesExtract(args []string) int {
	fs := flag.NewFlagSet("extract", flag.ContinueOnError)
	binary := fs.String("binary", "", "")
	var files, targets listFlag
	fs.Var(&files, "probes", "")
	fs.Var(&targets, "for", "")
	out := fs.String("o", "", "")
	if code, ok := c.probesFlags("extract", fs, args); !ok {
		return code
	}
	if *binary == "" || len(files) == 0 {
		fmt.Fprintln(c.stderr, "routerscope probes extract: --binary (the unstripped build) and --probes are required")
		return exitUsage
	}
	spec, err := loadSpecs(files)
	if err != nil {
		fmt.Fprintf(c.stderr, "routerscope probes extract: %v\n", err)
		return exitUsage
	}
	path := *out
	switch {
	case path != "":
	case spec.Offsets != "":
		path = spec.Offsets
	default:
		path = probes.OffsetsPath(spec.Path)
	}
	b, err := probes.OpenBinary(*binary)
	if err != nil {
		fmt.Fprintf(c.stderr, "routerscope probes extract: %v\n", err)
		return exitRuntime
	}
	defer b.Close()
	ob, err := probes.ExtractOffsets(b, spec)
	if err != nil {
		fmt.Fprintf(c.stderr, "routerscope probes extract: %v\n", err)
		return exitRuntime
	}
	builds := []*probes.OffsetsBuild{ob}
	for _, t := range targets {
		tb, err := probes.OpenBinary(t)
		if err != nil {
			fmt.Fprintf(c.stderr, "routerscope probes extract: --for: %v\n", err)
			return exitRuntime
		}
		fb, err := ob.For(tb)
		tb.Close()
		if err != nil {
			fmt.Fprintf(c.stderr, "routerscope probes extract: --for: %v\n", err)
			return exitRuntime
		}
		builds = append(builds, fb)
	}
	if err := probes.WriteOffsets(path, builds...); err != nil {
		fmt.Fprintf(c.stderr, "routerscope probes extract: %v\n", err)
		return exitRuntime
	}
	for _, b := range builds {
		fmt.Fprintf(c.stdout, "%s: %d probes for build id %s\n", path, len(b.Probes), b.BuildID)
	}
	return exitOK
}
