// Command kind-config-check reads kind cluster configs as `kind create
// cluster --config` does (strict YAML into kind's v1alpha4 types: an
// unknown or misspelt field is an error), then checks what kind's own
// validation would refuse: roles, a control-plane node, port numbers and
// protocols, host ports used twice.
//
// Usage: kind-config-check FILE...; exit status 1 on any problem.
package main

import (
	"fmt"
	"os"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

func problems(cluster *v1alpha4.Cluster) []string {
	var found []string
	if cluster.Kind != "Cluster" || cluster.APIVersion != "kind.x-k8s.io/v1alpha4" {
		found = append(found, fmt.Sprintf("want kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4; got %q, %q", cluster.Kind, cluster.APIVersion))
	}
	v1alpha4.SetDefaultsCluster(cluster)
	controlPlanes := 0
	hostPorts := map[string]int{}
	for i, node := range cluster.Nodes {
		switch node.Role {
		case v1alpha4.ControlPlaneRole:
			controlPlanes++
		case v1alpha4.WorkerRole:
		default:
			found = append(found, fmt.Sprintf("nodes[%d]: role %q is neither control-plane nor worker", i, node.Role))
		}
		for j, mapping := range node.ExtraPortMappings {
			where := fmt.Sprintf("nodes[%d].extraPortMappings[%d]", i, j)
			if mapping.ContainerPort < 1 || mapping.ContainerPort > 65535 {
				found = append(found, fmt.Sprintf("%s: containerPort %d out of range", where, mapping.ContainerPort))
			}
			if mapping.HostPort < -1 || mapping.HostPort > 65535 {
				found = append(found, fmt.Sprintf("%s: hostPort %d out of range", where, mapping.HostPort))
			}
			switch mapping.Protocol {
			case v1alpha4.PortMappingProtocolTCP, v1alpha4.PortMappingProtocolUDP, v1alpha4.PortMappingProtocolSCTP:
			default:
				found = append(found, fmt.Sprintf("%s: protocol %q is not TCP, UDP or SCTP", where, mapping.Protocol))
			}
			if mapping.HostPort > 0 {
				key := fmt.Sprintf("%s:%d/%s", mapping.ListenAddress, mapping.HostPort, mapping.Protocol)
				hostPorts[key]++
				if hostPorts[key] == 2 {
					found = append(found, fmt.Sprintf("%s: host port %s is mapped twice", where, key))
				}
			}
		}
	}
	if controlPlanes == 0 {
		found = append(found, "no control-plane node")
	}
	switch cluster.Networking.IPFamily {
	case v1alpha4.IPv4Family, v1alpha4.IPv6Family, v1alpha4.DualStackFamily:
	default:
		found = append(found, fmt.Sprintf("networking.ipFamily %q is not ipv4, ipv6 or dual", cluster.Networking.IPFamily))
	}
	return found
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kind-config-check FILE...")
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			os.Exit(2)
		}
		var cluster v1alpha4.Cluster
		if err := yaml.UnmarshalStrict(data, &cluster); err != nil {
			fmt.Printf("%s: %v\n", path, err)
			failed = true
			continue
		}
		found := problems(&cluster)
		for _, problem := range found {
			fmt.Printf("%s: %s\n", path, problem)
		}
		if len(found) > 0 {
			failed = true
			continue
		}
		fmt.Printf("%s: ok (%d nodes)\n", path, len(cluster.Nodes))
	}
	if failed {
		os.Exit(1)
	}
}
