// The image: the root Dockerfile against go.mod's Go version and the
// binary's GENLBRIDGE_HTTP_ADDR default (multi-stage, no frontend to pull,
// a builder on the build platform, static build, non-root scratch or
// distroless final stage without RUN, labels, EXPOSE, ENTRYPOINT); the root
// .dockerignore against what the Dockerfile and deploy/kmod/Dockerfile
// copy. make k8s-test builds the image and runs it (k8stest).

package deploy_test

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

type instruction struct {
	cmd, args string
	line      int
}

func parseDockerfile(t *testing.T, p string) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(string(read(t, p)), "\n") {
		tl := strings.TrimSpace(l)
		if cur.Len() == 0 && (tl == "" || strings.HasPrefix(tl, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(tl, "#") {
			continue // comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(tl, `\`) {
			cur.WriteString(strings.TrimSuffix(tl, `\`) + " ")
			continue
		}
		cur.WriteString(tl)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	return out
}

func goVersion(t *testing.T) string {
	t.Helper()
	for _, l := range strings.Split(string(read(t, "../go.mod")), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod: no go directive")
	return ""
}

func TestDockerfile(t *testing.T) {
	// A `# syntax=` line makes BuildKit pull its frontend: no registry, no build.
	if first, _, _ := strings.Cut(string(read(t, "../Dockerfile")), "\n"); strings.HasPrefix(strings.ReplaceAll(first, " ", ""), "#syntax=") {
		t.Errorf("the Dockerfile starts with %q: BuildKit would pull that frontend", first)
	}
	ins := parseDockerfile(t, "../Dockerfile")
	var stages [][]instruction
	args := map[string]string{}
	for _, in := range ins {
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if in.cmd == "ARG" && len(stages) == 0 {
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, have %d stages", len(stages))
	}
	if gv := goVersion(t); args["GO_VERSION"] != gv {
		t.Errorf("ARG GO_VERSION=%q, go.mod says go %s", args["GO_VERSION"], gv)
	}
	build, final := stages[0], stages[len(stages)-1]
	// The builder's image may be an ARG (make image passes a local one);
	// its default is the official Go image of go.mod's version.
	// Expanded until nothing changes (an ARG's default may name another:
	// the map's order must not matter).
	from := build[0].args
	for prev := ""; prev != from; {
		prev = from
		for k, v := range args {
			from = strings.ReplaceAll(from, "${"+k+"}", v)
		}
	}
	if !strings.Contains(from, "golang:"+args["GO_VERSION"]) || !strings.Contains(from, " AS ") {
		t.Errorf("first stage %q (%q): want a named golang:${GO_VERSION} builder", build[0].args, from)
	}
	// Built on the build machine's platform, cross-compiling for the
	// target's: a manifest list needs no emulation.
	if !strings.HasPrefix(build[0].args, "--platform=$BUILDPLATFORM ") {
		t.Errorf("first stage %q: want FROM --platform=$BUILDPLATFORM", build[0].args)
	}
	built := false
	for _, in := range build {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			built = true
			for _, w := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/genlbridge", "-o /out/genlbridge"} {
				if !strings.Contains(in.args, w) {
					t.Errorf("line %d: go build without %s", in.line, w)
				}
			}
		}
	}
	if !built {
		t.Error("the builder stage runs no go build")
	}

	var user, entrypoint, cmd string
	var expose []string
	labels := map[string]bool{}
	copied := false
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "CMD":
			cmd = in.args
		case "EXPOSE":
			expose = append(expose, strings.Fields(in.args)...)
		case "LABEL":
			for _, m := range regexp.MustCompile(`(org\.opencontainers\.image\.[a-z]+)=`).FindAllStringSubmatch(in.args, -1) {
				labels[m[1]] = true
			}
		case "COPY":
			copied = copied || strings.HasPrefix(in.args, "--from=build /out/genlbridge /genlbridge")
		}
	}
	if !strings.HasPrefix(final[0].args, "gcr.io/distroless/static") && final[0].args != "scratch" {
		t.Errorf("final image %q: want distroless static or scratch", final[0].args)
	}
	for _, in := range final {
		if in.cmd == "RUN" {
			t.Errorf("line %d: RUN in the final stage: each platform of the manifest list would need to run its binaries", in.line)
		}
	}
	if !copied {
		t.Error("the final stage does not copy /out/genlbridge from the build stage to /genlbridge")
	}
	if uid, _, _ := strings.Cut(user, ":"); user == "" || uid == "0" || uid == "root" {
		t.Errorf("final stage USER %q: want a non-root user", user)
	}
	for _, l := range []string{"title", "description", "source", "version"} {
		if !labels["org.opencontainers.image."+l] {
			t.Errorf("no label org.opencontainers.image.%s", l)
		}
	}
	port := httpPort(t, nil)
	if !slices.Contains(expose, strconv.Itoa(port)) && !slices.Contains(expose, strconv.Itoa(port)+"/tcp") {
		t.Errorf("EXPOSE %v, want %d (GENLBRIDGE_HTTP_ADDR's default)", expose, port)
	}
	if entrypoint != `["/genlbridge"]` || cmd != `["run"]` {
		t.Errorf(`ENTRYPOINT %s CMD %s, want ["/genlbridge"] ["run"]`, entrypoint, cmd)
	}
}

// dockerIgnored is .dockerignore's verdict on a path of the build context
// (patterns as path.Match, ** for any directories, ! for exceptions; the
// last match wins).
func dockerIgnored(patterns []string, p string) bool {
	ignored := false
	for _, pat := range patterns {
		neg := strings.HasPrefix(pat, "!")
		pat = strings.TrimPrefix(pat, "!")
		match := false
		for dir := p; ; dir = path.Dir(dir) {
			if ok, _ := path.Match(pat, dir); ok {
				match = true
			}
			if rest, ok := strings.CutPrefix(pat, "**/"); ok {
				if ok, _ := path.Match(rest, path.Base(dir)); ok {
					match = true
				}
			}
			if dir == "." || dir == "/" || !strings.Contains(dir, "/") {
				break
			}
		}
		if match {
			ignored = !neg
		}
	}
	return ignored
}

func TestDockerignore(t *testing.T) {
	var patterns []string
	for _, l := range strings.Split(string(read(t, "../.dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	// What the images need: the Go module and the binary's packages, the
	// module's sources and the init container's script.
	need := []string{"go.mod", "go.sum", "cmd/genlbridge/main.go", "bridge/bridge.go", "config/config.go",
		"monitor/monitor.go", "sink/nats.go", "event/event.go", "kmod/genl_exmpl.c", "kmod/Kbuild",
		"deploy/kmod/build-and-load.sh"}
	for _, df := range []string{"../Dockerfile", "kmod/Dockerfile"} {
		for _, in := range parseDockerfile(t, df) {
			if in.cmd != "COPY" || strings.HasPrefix(in.args, "--from") {
				continue
			}
			f := strings.Fields(in.args)
			for _, src := range f[:len(f)-1] {
				if src != "." && !strings.HasPrefix(src, "--") {
					need = append(need, src)
				}
			}
		}
	}
	for _, p := range need {
		if _, err := os.Stat(filepath.Join("..", p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if dockerIgnored(patterns, p) {
			t.Errorf(".dockerignore excludes %s, which an image needs", p)
		}
	}
	for _, p := range []string{".git/config", "build/genlbridge", "deploy/base/daemonset.yaml", "kmod/genl_exmpl.ko"} {
		if !dockerIgnored(patterns, p) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
}
