//go:build k8s

package k8stest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type ociDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	Platform  *struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
	} `json:"platform"`
}

func readBlob(t *testing.T, layout, digest string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(layout, "blobs", strings.Replace(digest, ":", "/", 1)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeBlob(t *testing.T, layout, digest string, v any) {
	t.Helper()
	if err := json.Unmarshal(readBlob(t, layout, digest), v); err != nil {
		t.Fatalf("%s: %v", digest, err)
	}
}

// TestImage: make image's OCI layout is one manifest list of linux/amd64
// and linux/arm64; each image runs /genlbridge run as 65532, and its
// /genlbridge is a static ELF executable for that platform's machine
// (x86-64, AArch64), read from the image's own layers. It logs the sizes.
func TestImage(t *testing.T) {
	if _, err := os.Stat(filepath.Join(imageOCI, "index.json")); err != nil {
		t.Skipf("no image: %v (make image builds it)", err)
	}
	var top struct{ Manifests []ociDescriptor }
	b, err := os.ReadFile(filepath.Join(imageOCI, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 || top.Manifests[0].MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("index.json: want one manifest list, have %+v", top.Manifests)
	}
	var list struct{ Manifests []ociDescriptor }
	decodeBlob(t, imageOCI, top.Manifests[0].Digest, &list)
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	var platforms []string
	for _, m := range list.Manifests {
		if m.Platform == nil || m.Platform.OS != "linux" {
			t.Fatalf("manifest %s: platform %+v", m.Digest, m.Platform)
		}
		arch := m.Platform.Architecture
		platforms = append(platforms, "linux/"+arch)
		var man struct {
			Config ociDescriptor
			Layers []ociDescriptor
		}
		decodeBlob(t, imageOCI, m.Digest, &man)
		var cfg struct {
			Architecture, OS string
			Config           struct {
				User         string
				Entrypoint   []string
				Cmd          []string
				ExposedPorts map[string]any
				Labels       map[string]string
			}
		}
		decodeBlob(t, imageOCI, man.Config.Digest, &cfg)
		if cfg.Architecture != arch || cfg.OS != "linux" {
			t.Errorf("%s: the config says %s/%s", arch, cfg.OS, cfg.Architecture)
		}
		if cfg.Config.User != "65532:65532" || !slices.Equal(cfg.Config.Entrypoint, []string{"/genlbridge"}) || !slices.Equal(cfg.Config.Cmd, []string{"run"}) {
			t.Errorf("%s: user %q entrypoint %q cmd %q, want 65532:65532 [/genlbridge] [run]", arch, cfg.Config.User, cfg.Config.Entrypoint, cfg.Config.Cmd)
		}
		if _, ok := cfg.Config.ExposedPorts["9477/tcp"]; !ok {
			t.Errorf("%s: exposed ports %v, want 9477/tcp", arch, cfg.Config.ExposedPorts)
		}
		compressed := man.Config.Size
		var unpacked int64
		files := map[string][]byte{}
		for _, l := range man.Layers {
			compressed += l.Size
			zr, err := gzip.NewReader(bytes.NewReader(readBlob(t, imageOCI, l.Digest)))
			if err != nil {
				t.Fatal(err)
			}
			tr := tar.NewReader(zr)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				unpacked += h.Size
				if h.Typeflag == tar.TypeReg {
					data, err := io.ReadAll(tr)
					if err != nil {
						t.Fatal(err)
					}
					files[strings.TrimPrefix(h.Name, "./")] = data
				}
			}
		}
		var names []string
		for n := range files {
			names = append(names, n)
		}
		slices.Sort(names)
		exe, ok := files["genlbridge"]
		if !ok {
			t.Fatalf("%s: no /genlbridge in the layers (files: %v)", arch, names)
		}
		f, err := elf.NewFile(bytes.NewReader(exe))
		if err != nil {
			t.Fatalf("%s: /genlbridge: %v", arch, err)
		}
		static := true
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				static = false
			}
		}
		if f.Machine != machines[arch] || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC || !static {
			t.Errorf("%s: /genlbridge is %v %v %v (static %v), want a static %v executable", arch, f.Class, f.Machine, f.Type, static, machines[arch])
		}
		for _, want := range []string{"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt"} {
			if _, ok := files[want]; !ok {
				t.Errorf("%s: no /%s in the image", arch, want)
			}
		}
		if !strings.Contains(string(files["etc/passwd"]), ":65532:65532:") {
			t.Errorf("%s: /etc/passwd has no user 65532", arch)
		}
		t.Logf("linux/%s: /genlbridge %s %v, %.1f MB; image %.1f MB compressed (%d layers), %.1f MB unpacked; files %v",
			arch, f.Class, f.Machine, float64(len(exe))/1e6, float64(compressed)/1e6, len(man.Layers), float64(unpacked)/1e6, names)
	}
	slices.Sort(platforms)
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("the manifest list holds %v, want linux/amd64 and linux/arm64", platforms)
	}
	fmt.Fprintf(os.Stderr, "k8stest: image %s:%s for %v\n", imageRepo, mustTag(t), platforms)
}

func mustTag(t *testing.T) string {
	tag, err := imageRef(imageOCI)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}
