package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/config"
)

// readmeRow is a setting's row in the README's configuration table.
func readmeRow(v config.Var) string {
	def := "(empty)"
	if v.Default != "" {
		def = "`" + v.Default + "`"
	}
	return fmt.Sprintf("| `%s` | %s | %s |", v.Env, def, v.Desc)
}

// The README's configuration table is the binary's: every setting, with its
// default and its description as `run --help` prints them, in order.
func TestReadmeListsEveryVariable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "| `GENLBRIDGE_") {
			rows = append(rows, line)
		}
	}
	var want []string
	for _, v := range config.Vars() {
		want = append(want, readmeRow(v))
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("README.md's configuration table differs from the binary's settings; want these rows:\n%s", strings.Join(want, "\n"))
	}
}
