// Package benchdoc rewrites one generated section of a Markdown file, such as BENCHMARKS.md, and leaves
// the rest as it is. Several generators share the file (`make bench` writes the benchmarks, `make soak`
// the fleet figures); each owns the text between its two markers:
//
//	<!-- begin NAME: written by COMMAND, do not edit -->
//	…
//	<!-- end NAME -->
package benchdoc

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/faceguard/faceguard/internal/atomicfile"
)

// Replace puts body between the markers of section name in the file at path, creating the file or
// appending the section when it is not there yet. command is what the begin marker says wrote it.
func Replace(path, name, command, body string) error {
	if !regexp.MustCompile(`^[a-z0-9-]+$`).MatchString(name) {
		return fmt.Errorf("benchdoc: section name %q: want lower-case letters, digits and dashes", name)
	}
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("benchdoc: %w", err)
	}
	section := fmt.Sprintf("<!-- begin %s: written by %s, do not edit -->\n%s\n<!-- end %s -->", name, command,
		strings.TrimRight(body, "\n"), name)
	re := regexp.MustCompile(`(?s)<!-- begin ` + name + `[:\s].*?<!-- end ` + name + ` -->`)
	var out []byte
	switch n := len(re.FindAllIndex(old, -1)); n {
	case 0:
		out = append(bytes.TrimRight(old, "\n"), []byte("\n\n"+section+"\n")...)
		out = bytes.TrimLeft(out, "\n")
	case 1:
		out = re.ReplaceAllLiteral(old, []byte(section))
	default:
		return fmt.Errorf("benchdoc: %s has section %q %d times; want one", path, name, n)
	}
	return atomicfile.WriteFile(path, out, 0o644)
}
