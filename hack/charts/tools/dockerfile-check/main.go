// Command dockerfile-check runs BuildKit's Dockerfile checks (what
// `docker build --check` reports) without a Docker engine or a registry:
// base images resolve to an empty Linux image config, so rules that need
// the real image (e.g. its ENV) see only PATH.
//
// Usage: dockerfile-check FILE...; exit status 1 on any warning or error.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerui"
	digest "github.com/opencontainers/go-digest"
)

// offlineResolver answers every base image with a minimal config instead of
// asking a registry (none is reachable where the checks run).
type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]any{
			"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}},
	})
	if err != nil {
		return "", "", nil, err
	}
	return ref, digest.FromBytes(config), config, nil
}

func check(ctx context.Context, path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	scratch, err := llb.Scratch().Marshal(ctx)
	if err != nil {
		return 0, err
	}
	sourceMap := llb.NewSourceMap(nil, path, "Dockerfile", data)
	sourceMap.Definition = scratch
	results, err := dockerfile2llb.DockerfileLint(ctx, data, dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{},
		SourceMap:    sourceMap,
		MetaResolver: offlineResolver{},
	})
	if err != nil {
		return 0, err
	}
	problems := 0
	for _, warning := range results.Warnings {
		line := 0
		if warning.Location != nil && len(warning.Location.Ranges) > 0 {
			line = int(warning.Location.Ranges[0].Start.Line)
		}
		fmt.Printf("%s:%d: %s: %s (%s)\n", path, line, warning.RuleName, warning.Detail, warning.URL)
		problems++
	}
	if results.Error != nil {
		line := 0
		if len(results.Error.Location.Ranges) > 0 {
			line = int(results.Error.Location.Ranges[0].Start.Line)
		}
		fmt.Printf("%s:%d: error: %s\n", path, line, results.Error.Message)
		problems++
	}
	return problems, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-check FILE...")
		os.Exit(2)
	}
	ctx := context.Background()
	problems := 0
	for _, path := range os.Args[1:] {
		n, err := check(ctx, path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			os.Exit(2)
		}
		if n == 0 {
			fmt.Printf("%s: ok\n", path)
		}
		problems += n
	}
	if problems > 0 {
		os.Exit(1)
	}
}
