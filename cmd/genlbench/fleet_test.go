//go:build linux

package main

import (
	"os"
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/config"
	"sigs.k8s.io/yaml"
)

// TestFleetEnvIsTheDaemonSets: the fleet's configuration genlbench
// measures (bridge-fleet, the idle check, the drain) is what
// deploy/base/daemonset.yaml sets, so that the figures deploy/README.md
// derives the DaemonSet's resources from are the DaemonSet's own.
func TestFleetEnvIsTheDaemonSets(t *testing.T) {
	b, err := os.ReadFile("../../deploy/base/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Name string
						Env  []struct{ Name, Value string }
					}
				}
			}
		}
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "genlbridge" {
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
		}
	}
	if len(env) == 0 {
		t.Fatal("no genlbridge container with an environment in the DaemonSet")
	}
	for _, kv := range fleetEnv {
		name, want, _ := strings.Cut(kv, "=")
		got, ok := env[name]
		// A setting the DaemonSet leaves out has the binary's default.
		if !ok {
			got = config.Default(name)
		}
		if got != want {
			t.Errorf("%s: the DaemonSet has %q, genlbench's fleetEnv %q", name, got, want)
		}
	}
}
