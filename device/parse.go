package device

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/faceguard/faceguard/policies"
)

// MaxFactsBytes bounds a facts document. A real one is a few kilobytes; anything near this is an attack
// or a bug, and is refused before it is parsed.
const MaxFactsBytes = 1 << 20

// ErrInvalidFacts is wrapped by every error ParseFacts returns for a document that breaks the contract.
var ErrInvalidFacts = errors.New("invalid facts")

// FactsError says what is wrong with a facts document, field by field.
type FactsError struct {
	Problems []FieldProblem
}

// FieldProblem is one reason a document was refused. Field is a dotted path such as "fr.enabled"
// ("" for the document itself).
type FieldProblem struct {
	Field   string
	Problem string
}

func (e *FactsError) Error() string {
	var b strings.Builder
	b.WriteString("invalid facts: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		if p.Field == "" {
			b.WriteString(p.Problem)
		} else {
			fmt.Fprintf(&b, "%s: %s", p.Field, p.Problem)
		}
	}
	return b.String()
}

func (e *FactsError) Unwrap() error { return ErrInvalidFacts }

// printer renders the validator's messages; they are English, as are field names.
var printer = message.NewPrinter(language.English)

var factsSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(policies.SchemaJSON))
	if err != nil {
		return nil, fmt.Errorf("read facts schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	const url = "https://faceguard.dev/schemas/faceguard.facts/v1.json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("load facts schema: %w", err)
	}
	return c.Compile(url)
})

// ParseFacts decodes a facts document and checks it against the v1 schema. A document that is not JSON,
// misses a required field, has a field of the wrong type or a field the schema does not know is refused
// with a *FactsError that names the field.
func ParseFacts(data []byte) (Facts, error) {
	if len(data) > MaxFactsBytes {
		return Facts{}, &FactsError{Problems: []FieldProblem{{Problem: fmt.Sprintf("document is %d bytes, the limit is %d", len(data), MaxFactsBytes)}}}
	}
	if err := ValidateFacts(data); err != nil {
		return Facts{}, err
	}
	var f Facts
	if err := json.Unmarshal(data, &f); err != nil {
		// The schema accepted it, so this is a disagreement between schema and types: say so plainly.
		return Facts{}, &FactsError{Problems: []FieldProblem{{Problem: "decode: " + err.Error()}}}
	}
	return f, nil
}

// ValidateFacts checks a facts document against the v1 schema without decoding it.
func ValidateFacts(data []byte) error {
	sch, err := factsSchema()
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return &FactsError{Problems: []FieldProblem{{Problem: "not a JSON document: " + describeJSONError(data, err)}}}
	}
	if err := sch.Validate(doc); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return &FactsError{Problems: schemaProblems(ve, doc)}
		}
		return &FactsError{Problems: []FieldProblem{{Problem: err.Error()}}}
	}
	return nil
}

// schemaProblems flattens the validator's tree into one problem per field, with the offending value
// when it is short enough to show.
func schemaProblems(ve *jsonschema.ValidationError, doc any) []FieldProblem {
	byField := map[string][]string{}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			field := fieldPath(e.InstanceLocation)
			problem := e.ErrorKind.LocalizedString(printer)
			if got, ok := scalarAt(doc, e.InstanceLocation); ok {
				problem += " (got " + got + ")"
			}
			byField[field] = append(byField[field], problem)
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	fields := make([]string, 0, len(byField))
	for f := range byField {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	out := make([]FieldProblem, 0, len(fields))
	for _, f := range fields {
		out = append(out, FieldProblem{Field: f, Problem: strings.Join(dedupe(byField[f]), ", or ")})
	}
	return out
}

// fieldPath renders a JSON location as people write it: egress[0].data.
func fieldPath(loc []string) string {
	var b strings.Builder
	for _, seg := range loc {
		if _, err := strconv.Atoi(seg); err == nil {
			b.WriteString("[" + seg + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	return b.String()
}

// scalarAt returns the JSON text of the value at loc when it is a short scalar.
func scalarAt(doc any, loc []string) (string, bool) {
	v := doc
	for _, seg := range loc {
		switch c := v.(type) {
		case map[string]any:
			v = c[seg]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return "", false
			}
			v = c[i]
		default:
			return "", false
		}
	}
	switch v.(type) {
	case map[string]any, []any:
		return "", false
	}
	b, err := json.Marshal(v)
	if err != nil || len(b) > 80 {
		return "", false
	}
	return string(b), true
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// describeJSONError turns a syntax error offset into a line and column a person can find.
func describeJSONError(data []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := 1, 1
		for _, c := range data[:min(int(se.Offset), len(data))] {
			if c == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
		}
		return fmt.Sprintf("line %d, column %d: %s", line, col, se.Error())
	}
	return err.Error()
}
