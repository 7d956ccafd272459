// Command lcdbench runs libcontainerd's benchmarks (internal/benchrun)
// against private containerd daemons, prints a table per daemon and writes
// it into docs/benchmarks.md. `make bench` runs it; it needs root.
//
// It is a module of its own so that moby's libcontainerd, its baseline for
// lifecycles and execs (moby.go), stays out of the library's go.mod:
//
//	cd internal/cmd/lcdbench && go run . -containerd v2,debian -doc ../../../docs/benchmarks.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/containerd/log"

	"github.com/ctrkit/libcontainerd/internal/benchrun"
	"github.com/ctrkit/libcontainerd/internal/testutil"
)

func main() {
	flavors := flag.String("containerd", testutil.FlavorV2,
		`comma-separated daemons to measure: "v2" (2.4.2 from .tools/bin) and/or "debian" (Debian's 1.6)`)
	scale := flag.Float64("scale", 1, "multiplies the iteration counts (0.1 for a quick smoke run)")
	phases := flag.String("phases", "", "comma-separated phases to run (default all: "+strings.Join(benchrun.AllPhases, ",")+")")
	doc := flag.String("doc", "../../../docs/benchmarks.md", `Markdown file to write each daemon's table into ("" to skip; the default is the repository's, seen from this directory)`)
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the benchmark process to this file")
	memprofile := flag.String("memprofile", "", "write an allocation profile of the benchmark process (every 4 KiB sampled) to this file")
	flag.Parse()
	if *memprofile != "" {
		runtime.MemProfileRate = 4096
		defer writeAllocs(*memprofile)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "lcdbench: %v\n", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "lcdbench: %v\n", err)
			os.Exit(1)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	// The library logs its reconnects during the recovery phase as
	// warnings; they would only interleave with the progress lines.
	_ = log.SetLevel("error")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var only []string
	if *phases != "" {
		only = strings.Split(*phases, ",")
	}
	failed := false
	for _, flavor := range strings.Split(*flavors, ",") {
		res, err := benchrun.Run(ctx, benchrun.Config{Flavor: flavor, Scale: *scale, Phases: only, Progress: os.Stderr,
			MobyClient: newMobyClient})
		if err != nil {
			fmt.Fprintf(os.Stderr, "lcdbench: containerd %s: %v\n", flavor, err)
			failed = true
			continue
		}
		fmt.Printf("\n%s\n", res.Markdown())
		if *doc != "" {
			if err := res.UpdateDoc(*doc); err != nil {
				fmt.Fprintf(os.Stderr, "lcdbench: %v\n", err)
				failed = true
				continue
			}
			fmt.Printf("(written to %s)\n", *doc)
		}
	}
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func writeAllocs(path string) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lcdbench: %v\n", err)
	}
}
