// Package kmod holds the example kernel module genl_exmpl.ko (its C
// sources build with the kernel's kbuild, not with Go) and, for Go, the
// module's YNL spec.
package kmod

import _ "embed"

// Spec is the YNL spec of the CONTROL_EXMPL generic netlink family that
// genl_exmpl.ko registers: control_exmpl.yaml, in the format of the kernel's
// Documentation/netlink/specs (protocol genetlink-c). Its numbers are the
// module's ABI; kmod/header_test.go keeps them equal to genl_exmpl.h and to
// package exmpl. The bytes are shared: callers must not modify them.
//
//go:embed control_exmpl.yaml
var Spec []byte
