package ynl

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrMalformed is wrapped by every error Decode returns: the message's TLV
// structure is broken (an attribute shorter than its header or running past
// its container, bytes left over after the last attribute, a truncated fixed
// header). The error text says at which byte offset of the payload.
var ErrMalformed = errors.New("malformed message")

// ErrUnsupportedProtocol is wrapped by Compile's error for a spec whose
// protocol is not generic netlink (netlink-raw, or a level this package does
// not know). The registry skips netlink-raw specs with a note instead.
var ErrUnsupportedProtocol = errors.New("unsupported protocol")

// Pos is a position in a spec or override file. Line and Column count from 1;
// zero means unknown.
type Pos struct {
	File   string
	Line   int
	Column int
}

// String formats p as file:line:col, leaving out what is unknown.
func (p Pos) String() string {
	s := p.File
	if p.Line > 0 {
		s += ":" + strconv.Itoa(p.Line)
		if p.Column > 0 {
			s += ":" + strconv.Itoa(p.Column)
		}
	}
	return s
}

// Error is a problem in a spec or override file, with where it is. Every
// error ParseSpec, ParseOverride and Compile return is an *Error; Err, when
// set, is a sentinel (ErrUnsupportedProtocol) that errors.Is finds.
type Error struct {
	Pos
	Msg string
	Err error
}

func (e *Error) Error() string {
	if p := e.Pos.String(); p != "" {
		return p + ": " + e.Msg
	}
	return e.Msg
}

// Unwrap returns the sentinel the error carries, if any.
func (e *Error) Unwrap() error { return e.Err }

func errorAt(p Pos, format string, args ...any) *Error {
	return &Error{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

// SourceError is an error LoadRegistry returns about one of its sources: a
// file in it, or the source itself (a directory that cannot be read). Source
// is the source's index in the list LoadRegistry was given, so that a
// caller tells its own directories' errors from the system's with
// errors.As, whatever the directories' names. Err is the error itself,
// whose text is the SourceError's: an *Error (file:line:col) for a file
// that does not parse or compile, which errors.As finds through the
// SourceError.
type SourceError struct {
	Source int
	Err    error
}

func (e *SourceError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *SourceError) Unwrap() error { return e.Err }
