package ynl

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Source is a directory of specs (*.yaml, *.yaml.gz) and overrides
// (*.override.yaml, *.override.yaml.gz) for LoadRegistry.
type Source struct {
	// Name says where the files are, in origins and errors: a directory's
	// path, or e.g. "embedded".
	Name string
	// FS holds the files, in directory Dir ("" or "." for its root).
	FS  fs.FS
	Dir string
	// Optional sources that do not exist are skipped silently; a missing
	// required source is an error.
	Optional bool
}

// DirSource is the directory dir of the file system.
func DirSource(dir string, optional bool) Source {
	return Source{Name: dir, FS: os.DirFS(dir), Dir: ".", Optional: optional}
}

// SystemSpecDir is where a system's YNL specs are installed (by packages
// of the kernel's tools/net/ynl, e.g. Debian's and Fedora's ynl).
const SystemSpecDir = "/usr/share/ynl/specs"

// linuxDocGlob matches the spec directories of Debian's linux-doc-* packages.
const linuxDocGlob = "/usr/share/doc/linux-doc-*/Documentation/netlink/specs"

// LinuxDocSpecDirs returns the spec directories of the installed linux-doc
// packages (/usr/share/doc/linux-doc-<version>/Documentation/netlink/specs),
// the newest kernel version first.
func LinuxDocSpecDirs() []string {
	dirs, _ := filepath.Glob(linuxDocGlob)
	sortNewestFirst(dirs)
	return dirs
}

// sortNewestFirst orders linux-doc spec directories by the kernel version
// in their package name, newest first (6.12 before 6.1, 6.1 before 5.10).
func sortNewestFirst(dirs []string) {
	version := func(dir string) []int {
		// .../linux-doc-6.12/Documentation/netlink/specs
		name := path.Base(path.Dir(path.Dir(path.Dir(filepath.ToSlash(dir)))))
		var v []int
		for _, p := range strings.FieldsFunc(strings.TrimPrefix(name, "linux-doc-"), func(r rune) bool { return r == '.' || r == '-' }) {
			n, err := strconv.Atoi(p)
			if err != nil {
				break
			}
			v = append(v, n)
		}
		return v
	}
	sort.SliceStable(dirs, func(i, j int) bool {
		if c := slices.Compare(version(dirs[i]), version(dirs[j])); c != 0 {
			return c > 0
		}
		return dirs[i] > dirs[j]
	})
}

// DefaultSources is the precedence genlbridge loads specs in, the first
// winning for a family (and, separately, for its override):
//
//  1. userDirs (GENLBRIDGE_SPEC_DIRS), in their order: what the operator
//     points at explicitly replaces everything else;
//  2. embedded, in its order: the project's own specs and overrides
//     (ynl/specs, kmod's spec). They win over the system's so that every
//     node of a fleet writes a family's events alike, whatever it has
//     installed, and as the project tests them: the kernel's 6.12 specs
//     write some attributes otherwise (IPv4 addresses as numbers, ethtool
//     bitsets as hex) and newer kernels' may change again;
//  3. SystemSpecDir (/usr/share/ynl/specs): the specs the system's own ynl
//     tools use, for the families genlbridge does not ship a spec of
//     (devlink, dpll, team, ...; it ships its own nlctrl.yaml);
//  4. the linux-doc packages' specs, the newest kernel first: a newer spec
//     describes more attributes and, attribute numbers being ABI, still
//     decodes an older kernel's messages.
//
// An override applies to whichever spec of its family won, from any
// source: the kernel's specs name no group for many notifications, and the
// embedded overrides say which for devlink and team too, whose specs come
// from the system. The user's directories are required (a missing one is
// an error), the system's optional. Each Source is one index of the list,
// in the order above: an error of LoadRegistry whose *SourceError has an
// index below len(userDirs) is about a user's directory.
func DefaultSources(userDirs []string, embedded ...Source) []Source {
	var out []Source
	for _, d := range userDirs {
		out = append(out, DirSource(d, false))
	}
	out = append(out, embedded...)
	out = append(out, DirSource(SystemSpecDir, true))
	for _, d := range LinuxDocSpecDirs() {
		out = append(out, DirSource(d, true))
	}
	return out
}

// MemSource is a source of files held in memory (file name -> contents),
// e.g. a spec embedded as a []byte. The map must not change afterwards.
func MemSource(name string, files map[string][]byte) Source {
	return Source{Name: name, FS: memFS(files), Dir: "."}
}

// memFS is a flat read-only fs.FS of files in memory.
type memFS map[string][]byte

func (m memFS) Open(name string) (fs.File, error) {
	if name == "." {
		return &memDir{fs: m}, nil
	}
	data, ok := m[name]
	if !ok || !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{name: name, r: bytes.NewReader(data), size: int64(len(data))}, nil
}

func (m memFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name != "." {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	var out []fs.DirEntry
	for n, data := range m {
		out = append(out, fs.FileInfoToDirEntry(memInfo{name: n, size: int64(len(data))}))
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

type memFile struct {
	name string
	r    *bytes.Reader
	size int64
}

func (f *memFile) Stat() (fs.FileInfo, error) { return memInfo{name: f.name, size: f.size}, nil }
func (f *memFile) Read(b []byte) (int, error) { return f.r.Read(b) }
func (f *memFile) Close() error               { return nil }

type memDir struct{ fs memFS }

func (d *memDir) Stat() (fs.FileInfo, error) { return memInfo{name: ".", dir: true}, nil }
func (d *memDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: ".", Err: fs.ErrInvalid}
}
func (d *memDir) Close() error { return nil }

type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string { return path.Base(i.name) }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }

// Registry holds the families compiled from sources. Immutable once
// LoadRegistry returns it; safe for concurrent use.
type Registry struct {
	families  map[string]*regEntry
	names     []string
	notes     []string
	overrides map[string]string
}

type regEntry struct {
	fam      *Family
	origin   string
	override string
}

// LoadRegistry reads every spec and override of the sources, in precedence
// order: the first source holding a spec of a family wins (within a source,
// files in name order), and likewise for overrides; an override applies to
// whichever spec of its family won. It returns what loaded and one error
// per file that did not (with file:line:col where the problem is in a
// file): a spec that does not parse or compile is left out (a spec of the
// same family from a later source may then win), an override that does not
// fit its family's winning spec is left out and the family loads without
// it. The caller decides what an error means (genlbridge's daemon stops).
// Specs of protocol netlink-raw are not generic netlink: they are skipped
// with a note (Notes), not an error.
//
// Every error is a *SourceError whose Source is the index in sources of
// the source it is about: the source that cannot be read, the one holding
// the file that does not read, parse or compile, the one holding a second
// spec or override of a family, and, for an override that does not fit
// its family's spec, the override's (the spec may be in another source;
// the error names both files). The *Error with the file:line:col, when
// there is one, is inside: errors.As finds it.
func LoadRegistry(sources ...Source) (*Registry, []error) {
	r := &Registry{families: map[string]*regEntry{}, overrides: map[string]string{}}
	var errs []error
	fail := func(source int, err error) {
		errs = append(errs, &SourceError{Source: source, Err: err})
	}
	specs := map[string]*Spec{}
	origins := map[string]string{}
	overrides := map[string]*Override{}
	plain := map[string]*Family{} // each spec compiled without its override
	from := map[string]int{}      // "spec "/"override " + family -> index of the source it came from
	for si, src := range sources {
		files, err := readDir(src)
		if err != nil {
			if !(src.Optional && errors.Is(err, fs.ErrNotExist)) {
				fail(si, fmt.Errorf("read spec source %s: %w", src.Name, err))
			}
			continue
		}
		for _, f := range files {
			origin := path.Join(src.Name, f)
			isOverride := strings.HasSuffix(f, ".override.yaml") || strings.HasSuffix(f, ".override.yaml.gz")
			data, err := readFile(src, f)
			if err != nil {
				fail(si, fmt.Errorf("read %s: %w", origin, err))
				continue
			}
			if isOverride {
				o, err := ParseOverride(origin, data)
				if err != nil {
					fail(si, err)
					continue
				}
				if prev, dup := r.overrides[o.Family]; dup {
					if from["override "+o.Family] == si {
						fail(si, errorAt(o.Pos, "second override of family %s in %s (first: %s)", o.Family, src.Name, prev))
					}
					continue
				}
				overrides[o.Family], r.overrides[o.Family] = o, origin
				from["override "+o.Family] = si
				continue
			}
			s, err := ParseSpec(origin, data)
			if err != nil {
				if name, proto := specHeader(origin, data); proto == ProtocolNetlinkRaw {
					r.notes = append(r.notes, fmt.Sprintf("%s: skipped: family %s is netlink-raw, not generic netlink", origin, name))
				} else {
					fail(si, err)
				}
				continue
			}
			if s.Protocol == ProtocolNetlinkRaw {
				r.notes = append(r.notes, fmt.Sprintf("%s: skipped: family %s is netlink-raw, not generic netlink", origin, s.Name))
				continue
			}
			if prev, dup := origins[s.Name]; dup {
				if from["spec "+s.Name] == si {
					fail(si, errorAt(s.Pos, "second spec of family %s in %s (first: %s)", s.Name, src.Name, prev))
				}
				continue
			}
			// Check it compiles on its own, so that a broken spec lets a
			// later source's spec of the family win.
			f, err := Compile(s, nil)
			if err != nil {
				fail(si, err)
				continue
			}
			specs[s.Name], origins[s.Name], plain[s.Name] = s, origin, f
			from["spec "+s.Name] = si
		}
	}
	for name, s := range specs {
		e := &regEntry{origin: origins[name]}
		if o := overrides[name]; o != nil {
			f, err := Compile(s, o)
			if err != nil {
				fail(from["override "+name], fmt.Errorf("override %s does not fit spec %s: %w", r.overrides[name], origins[name], err))
			} else {
				e.fam, e.override = f, r.overrides[name]
			}
		}
		if e.fam == nil {
			e.fam = plain[name]
		}
		r.families[name] = e
		r.names = append(r.names, name)
	}
	for name, origin := range r.overrides {
		if specs[name] == nil {
			r.notes = append(r.notes, fmt.Sprintf("%s: unused: no spec of family %s", origin, name))
		}
	}
	sort.Strings(r.names)
	sort.Strings(r.notes)
	return r, errs
}

// specHeader returns the name and protocol a spec file gives, as far as
// they can be read, for a spec ParseSpec rejects.
func specHeader(file string, data []byte) (name, protocol string) {
	root, err := parseYAML(file, data)
	if err != nil || root.Kind != yaml.MappingNode {
		return "", ""
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			continue
		}
		switch k.Value {
		case "name":
			name = v.Value
		case "protocol":
			protocol = v.Value
		}
	}
	return name, protocol
}

// readDir lists the spec and override files of a source, in name order.
func readDir(src Source) ([]string, error) {
	dir := src.Dir
	if dir == "" {
		dir = "."
	}
	entries, err := fs.ReadDir(src.FS, dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yaml.gz")) {
			continue
		}
		out = append(out, path.Join(dir, n))
	}
	return out, nil
}

// readFile reads a file of a source as ReadSpecFile does.
func readFile(src Source, name string) ([]byte, error) {
	f, err := src.FS.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readSpec(f, strings.HasSuffix(name, ".gz"))
}

// ReadSpecFile reads a spec or override file as LoadRegistry reads the
// files of its sources: a name ending in .gz is decompressed, and a file
// larger than 1 MiB (decompressed) is an error, so that ParseSpec and
// ParseOverride get what LoadRegistry would give them.
func ReadSpecFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := readSpec(f, strings.HasSuffix(path, ".gz"))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// readSpec reads rd, gzip-compressed if gz, up to maxFileSize bytes.
func readSpec(rd io.Reader, gz bool) ([]byte, error) {
	if gz {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		rd = zr
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(rd, maxFileSize+1)); err != nil {
		return nil, err
	}
	if buf.Len() > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return buf.Bytes(), nil
}

// Family returns the family name (a spec's name) and which file its spec
// came from.
func (r *Registry) Family(name string) (f *Family, origin string, ok bool) {
	e := r.families[name]
	if e == nil {
		return nil, "", false
	}
	return e.fam, e.origin, true
}

// Override returns which override file applies to family name, if any.
func (r *Registry) Override(name string) (origin string, ok bool) {
	e := r.families[name]
	if e == nil || e.override == "" {
		return "", false
	}
	return e.override, true
}

// Families returns the names of the loaded families, sorted.
func (r *Registry) Families() []string { return slices.Clone(r.names) }

// Notes returns what was skipped without being an error (netlink-raw
// specs, overrides of families without a spec), sorted.
func (r *Registry) Notes() []string { return slices.Clone(r.notes) }
