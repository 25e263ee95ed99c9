// systemd/genlbridge.service, the unit for hosts without Kubernetes: its
// hardening keys, and its environment against the binary's settings
// (config.Load; the stop timeout against GENLBRIDGE_SHUTDOWN_TIMEOUT and
// GENLBRIDGE_FLUSH_TIMEOUT).

package deploy_test

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSystemdUnit(t *testing.T) {
	data := read(t, "systemd/genlbridge.service")
	keys := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Errorf("not key=value: %q", l)
				continue
			}
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	want := map[string]string{
		"CapabilityBoundingSet":   "CAP_NET_ADMIN",
		"AmbientCapabilities":     "CAP_NET_ADMIN",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"StateDirectory":          "genlbridge",
		"DynamicUser":             "yes",
		"RestrictAddressFamilies": "AF_NETLINK AF_INET AF_INET6 AF_UNIX",
		"EnvironmentFile":         "-/etc/genlbridge/env",
		"Restart":                 "on-failure",
	}
	for k, v := range want {
		if got := keys["Service."+k]; !slices.Equal(got, []string{v}) {
			t.Errorf("[Service] %s = %v, want %s", k, got, v)
		}
	}
	for _, k := range []string{"PrivateNetwork", "User"} {
		if keys["Service."+k] != nil {
			t.Errorf("[Service] %s is set: %v", k, keys["Service."+k])
		}
	}
	if ex := keys["Service.ExecStart"]; len(ex) != 1 || !strings.HasSuffix(ex[0], "genlbridge run") {
		t.Errorf("ExecStart %v, want .../genlbridge run", ex)
	}
	env := map[string]string{}
	for _, e := range keys["Service.Environment"] {
		k, v, _ := strings.Cut(strings.Trim(e, `"`), "=")
		env[k] = v
	}
	if env["GENLBRIDGE_DATA_DIR"] != "/var/lib/"+keys["Service.StateDirectory"][0] {
		t.Errorf("GENLBRIDGE_DATA_DIR %q is not the state directory", env["GENLBRIDGE_DATA_DIR"])
	}
	if _, err := loadWith(t, env); err != nil {
		t.Errorf("the binary rejects the unit's settings: %v", err)
	}
	stop := duration(t, env, "GENLBRIDGE_SHUTDOWN_TIMEOUT") + duration(t, env, "GENLBRIDGE_FLUSH_TIMEOUT")
	ts := keys["Service.TimeoutStopSec"]
	if len(ts) != 1 {
		t.Fatalf("TimeoutStopSec %v", ts)
	}
	d, err := time.ParseDuration(ts[0])
	if err != nil {
		t.Fatalf("TimeoutStopSec %q: %v", ts[0], err)
	}
	if d <= stop {
		t.Errorf("TimeoutStopSec %s must exceed GENLBRIDGE_SHUTDOWN_TIMEOUT + GENLBRIDGE_FLUSH_TIMEOUT = %s", d, stop)
	}
}
