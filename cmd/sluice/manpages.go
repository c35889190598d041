//go:build sluice_manpages

// Built only with -tags sluice_manpages (packaging/build.sh), so the sluice
// binary never carries cobra/doc: `go run -tags sluice_manpages ./cmd/sluice
// DIR` writes DIR/man1/*.1 and DIR/bash-completion/sluice from the command
// tree, then exits.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra/doc"
)

func init() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run -tags sluice_manpages ./cmd/sluice DIR")
		os.Exit(2)
	}
	if err := writeManpages(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "manpages:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func writeManpages(dir string) error {
	root := rootCmd()
	root.DisableAutoGenTag = true
	man := filepath.Join(dir, "man1")
	comp := filepath.Join(dir, "bash-completion")
	for _, d := range []string{man, comp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// A fixed date (SOURCE_DATE_EPOCH, as reproducible builds set it) keeps
	// two builds of one commit identical.
	date := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err == nil {
			date = time.Unix(sec, 0).UTC()
		}
	}
	header := &doc.GenManHeader{Section: "1", Source: "Sluice " + os.Getenv("SLUICE_VERSION"), Manual: "Sluice Manual", Date: &date}
	if err := doc.GenManTree(root, header, man); err != nil {
		return err
	}
	return root.GenBashCompletionFileV2(filepath.Join(comp, "sluice"), true)
}
