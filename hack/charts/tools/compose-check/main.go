// Command compose-check loads Compose files the way `docker compose config`
// does (compose-go: the compose-spec JSON schema, interpolation,
// normalisation, consistency: depends_on, networks, volumes), and then
// checks what that leaves to the engine: build contexts, Dockerfiles and
// bind-mounted or config files exist, and every depends_on target that is
// waited for as healthy has a healthcheck.
//
// Usage: compose-check [-print] FILE...; exit status 1 on any problem.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func problems(project *types.Project) []string {
	var found []string
	for _, name := range project.ServiceNames() {
		service := project.Services[name]
		if build := service.Build; build != nil {
			if !exists(build.Context) {
				found = append(found, fmt.Sprintf("service %s: build context %s does not exist", name, build.Context))
			}
			dockerfile := build.Dockerfile
			if dockerfile != "" && build.DockerfileInline == "" {
				if !filepath.IsAbs(dockerfile) {
					dockerfile = filepath.Join(build.Context, dockerfile)
				}
				if !exists(dockerfile) {
					found = append(found, fmt.Sprintf("service %s: Dockerfile %s does not exist", name, dockerfile))
				}
			}
		}
		for _, volume := range service.Volumes {
			if volume.Type == types.VolumeTypeBind && !exists(volume.Source) {
				found = append(found, fmt.Sprintf("service %s: bind mount source %s does not exist", name, volume.Source))
			}
		}
		for dependency, condition := range service.DependsOn {
			target, ok := project.Services[dependency]
			if !ok {
				continue // compose-go already reports unknown services
			}
			if condition.Condition == types.ServiceConditionHealthy &&
				(target.HealthCheck == nil || target.HealthCheck.Disable) {
				found = append(found, fmt.Sprintf("service %s waits for %s to be healthy, but %s has no healthcheck", name, dependency, dependency))
			}
		}
	}
	for name, config := range project.Configs {
		if config.File != "" && !exists(config.File) {
			found = append(found, fmt.Sprintf("config %s: file %s does not exist", name, config.File))
		}
	}
	return found
}

func main() {
	print := flag.Bool("print", false, "print the resolved project (like `docker compose config`)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-print] FILE...")
		os.Exit(2)
	}
	failed := false
	for _, file := range flag.Args() {
		options, err := cli.NewProjectOptions(
			[]string{file},
			cli.WithWorkingDirectory(filepath.Dir(file)),
			cli.WithOsEnv,
			cli.WithDotEnv,
			cli.WithConsistency(true),
			cli.WithResolvedPaths(true),
		)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			os.Exit(2)
		}
		project, err := options.LoadProject(context.Background())
		if err != nil {
			fmt.Printf("%s: %v\n", file, err)
			failed = true
			continue
		}
		found := problems(project)
		for _, problem := range found {
			fmt.Printf("%s: %s\n", file, problem)
		}
		if len(found) > 0 {
			failed = true
			continue
		}
		if *print {
			out, err := project.MarshalYAML()
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
				os.Exit(2)
			}
			fmt.Print(string(out))
		}
		fmt.Printf("%s: ok (%d services)\n", file, len(project.Services))
	}
	if failed {
		os.Exit(1)
	}
}
