package daemon

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/genlbridge/genlbridge/ynl"
	"github.com/genlbridge/genlbridge/ynl/specs"
)

// loadSpecs loads the YNL specs the bridge decodes with (specs.Registry).
// A file in one of the user's directories that does not load stops the
// start, with its file and line: the operator put it there. One from the
// system's directories (/usr/share/ynl/specs, linux-doc) is logged, and
// the next source's spec of its family wins: a newer kernel's spec with
// syntax this bridge does not know must not take a fleet down.
func loadSpecs(userDirs []string, log *slog.Logger) (*ynl.Registry, error) {
	reg, errs := specs.Registry(userDirs)
	var fatal []error
	for _, err := range errs {
		if fromDirs(err, len(userDirs)) {
			fatal = append(fatal, err)
			continue
		}
		log.Warn("a system YNL spec does not load; another source's spec of its family is used, if any", "err", err)
	}
	if len(fatal) > 0 {
		return nil, fmt.Errorf("GENLBRIDGE_SPEC_DIRS: %w", errors.Join(fatal...))
	}
	for _, n := range reg.Notes() {
		log.Debug("spec note", "note", n)
	}
	return reg, nil
}

// fromDirs says whether err is about one of the first n sources (the
// user's directories, which come first in specs.Registry's order).
func fromDirs(err error, n int) bool {
	var se *ynl.SourceError
	return errors.As(err, &se) && se.Source < n
}
