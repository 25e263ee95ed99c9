package main

import (
	"os"
	"strings"
	"testing"

	"github.com/genlbridge/genlbridge/config"
)

// The README's configuration table must name every setting the binary reads.
func TestReadmeListsEveryVariable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range config.Vars() {
		if !strings.Contains(string(b), "`"+v.Env+"`") {
			t.Errorf("README.md does not document %s", v.Env)
		}
	}
}
