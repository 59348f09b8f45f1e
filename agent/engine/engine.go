// Package engine evaluates the Rego pack. It is the only package that imports OPA.
//
// One generation = one compiled policy (the built-in pack or a verified bundle) with its prepared queries.
// The active generation sits behind an atomic pointer: evaluations never lock, and a new bundle replaces
// the policy in one store. A bundle that is unsigned, tampered, signed by another key, not newer than the
// active one, or that does not compile or does not answer a canary decision is refused and changes nothing.
//
// The engine must never reach the network: http.send and the net.* builtins are refused at compile time.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/version"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/policies"
)

// BuiltinRevision is the revision of the pack compiled into the binary. Any signed bundle is newer.
const BuiltinRevision = "builtin"

// Queries the pack must answer.
const (
	decisionQuery = "data.faceguard.decision"
	findingsQuery = "data.faceguard.findings"
	matchQuery    = "data.faceguard.match"
	catalogQuery  = "data.faceguard.controls"
	configQuery   = "data.faceguard.config"
	vocabQuery    = "data.faceguard.vocab"
)

// unsafeBuiltins are refused at compile time: a policy on a terminal decides from facts, it never
// reaches out. Every net.* builtin is added in init.
var unsafeBuiltins = map[string]struct{}{
	"http.send":   {},
	"opa.runtime": {}, // would expose the agent's environment to a bundle
}

func init() {
	for _, b := range ast.Builtins {
		if strings.HasPrefix(b.Name, "net.") {
			unsafeBuiltins[b.Name] = struct{}{}
		}
	}
}

// Options configure an Engine.
type Options struct {
	// VerificationKey is the PEM public key (RSA or ECDSA) that bundles must be signed with. Without it
	// every bundle is refused and the built-in pack stays.
	VerificationKey []byte
	// StateDir keeps the active bundle so a restart comes back on the last good policy. Empty: no
	// persistence (the check command).
	StateDir string
	// MaxBundleBytes bounds a bundle, compressed and per file. Zero means DefaultMaxBundleBytes.
	MaxBundleBytes int64
	Logger         *slog.Logger
}

// DefaultMaxBundleBytes bounds a bundle; the built-in pack is about 60 KiB.
const DefaultMaxBundleBytes = 8 << 20

// Engine evaluates the active policy generation.
type Engine struct {
	opts   Options
	log    *slog.Logger
	active atomic.Pointer[generation]
	swapMu sync.Mutex // serialises activations; evaluations never take it
}

// generation is one compiled policy, immutable once built.
type generation struct {
	info     Info
	decision rego.PreparedEvalQuery
	match    rego.PreparedEvalQuery
	// findings and assembly: the decision assembled in Go from the pack's findings (assemble.go); nil
	// assembly when the pack's assembly rules are not the built-in ones.
	findings rego.PreparedEvalQuery
	assembly *assembly
	// constants are the values of the pack's per_policy rules, which the decision's queries take;
	// notes say which marked rules did not qualify.
	constants []constant
	notes     []string
	// matchTable holds the policy's match answer for every enumerated input (see matchtable.go); nil
	// when the pack is not pure and every match is evaluated live.
	matchTable []device.MatchResult
	catalog    map[string]Control
	config     map[string]any
	vocab      map[string]any
}

// Info describes the active policy.
type Info struct {
	Revision    string    `json:"revision"`
	Source      string    `json:"source"` // "builtin" or "bundle"
	SHA256      string    `json:"sha256,omitempty"`
	ActivatedAt time.Time `json:"activated_at"`
}

// Control is one entry of data.faceguard.controls, the pack's catalog.
type Control struct {
	Severity string      `json:"severity"`
	Articles []string    `json:"articles"`
	Action   *string     `json:"action"`
	Facts    []string    `json:"facts"`
	Title    device.Text `json:"title"`
}

// New compiles the built-in pack and, when StateDir holds a previously activated bundle that still
// verifies, comes back on that one.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.MaxBundleBytes == 0 {
		opts.MaxBundleBytes = DefaultMaxBundleBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{opts: opts, log: opts.Logger.With("component", "engine")}
	b, err := builtinBundle()
	if err != nil {
		return nil, err
	}
	g, err := compile(ctx, b, Info{Revision: BuiltinRevision, Source: "builtin", ActivatedAt: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("compile built-in pack: %w", err)
	}
	e.active.Store(g)
	e.logNotes(g)
	if opts.StateDir != "" {
		e.restorePersisted(ctx)
	}
	return e, nil
}

// builtinBundle reads the embedded pack as an OPA bundle, so it takes the same road as a signed one.
func builtinBundle() (*bundle.Bundle, error) {
	return loadFSBundle(policies.Pack())
}

func loadFSBundle(fsys fs.FS) (*bundle.Bundle, error) {
	b, err := loader.NewFileLoader().
		WithFS(fsys).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotation(true).      // per_policy rules (perpolicy.go)
		WithSkipBundleVerification(true). // a tree on disk or in the binary, not a signed artefact
		AsBundle(".")
	if err != nil {
		return nil, fmt.Errorf("load policy tree: %w", err)
	}
	return b, nil
}

// compile activates a bundle into a fresh store and compiler once, prepares every query of the generation
// on them, and checks that it answers the canary decisions.
func compile(ctx context.Context, b *bundle.Bundle, info Info) (*generation, error) {
	assembleInGo := assemblesLikeBuiltin(b) // before activation, on the modules as parsed
	store := inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	compiler := ast.NewCompiler().
		WithDefaultRegoVersion(ast.RegoV1).
		WithUnsafeBuiltins(unsafeBuiltins)
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return nil, err
	}
	if err := bundle.Activate(&bundle.ActivateOpts{Ctx: ctx, Store: store, Txn: txn, Compiler: compiler,
		Metrics: metrics.NoOp(), Bundles: map[string]*bundle.Bundle{"faceguard": b}}); err != nil {
		store.Abort(ctx, txn)
		return nil, fmt.Errorf("%w: %w", ErrBundleCompile, err)
	}
	if err := store.Commit(ctx, txn); err != nil {
		return nil, err
	}
	prepareBody := func(query ast.Body) (rego.PreparedEvalQuery, error) {
		return rego.New(
			rego.ParsedQuery(query),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.SetRegoVersion(ast.RegoV1),
			rego.UnsafeBuiltins(unsafeBuiltins),
			rego.StrictBuiltinErrors(true),
		).PrepareForEval(ctx)
	}
	prepare := func(query string) (rego.PreparedEvalQuery, error) {
		body, err := ast.ParseBody(query)
		if err != nil {
			return rego.PreparedEvalQuery{}, err
		}
		return prepareBody(body)
	}
	g := &generation{info: info}
	// The decision's queries take the values of the rules marked per_policy (perpolicy.go).
	if g.constants, g.notes, err = perPolicyConstants(ctx, compiler, prepare); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBundleCompile, err)
	}
	prepareDecision := func(query string) (rego.PreparedEvalQuery, error) {
		body, err := withConstants(query, g.constants)
		if err != nil {
			return rego.PreparedEvalQuery{}, err
		}
		return prepareBody(body)
	}
	if g.decision, err = prepareDecision(decisionQuery); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBundleCompile, err)
	}
	if g.match, err = prepare(matchQuery); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBundleCompile, err)
	}
	// Static parts of the pack, read once per generation.
	var rawCatalog any
	for _, q := range []struct {
		query string
		into  any
		raw   *any
	}{{catalogQuery, &g.catalog, &rawCatalog}, {configQuery, &g.config, nil}, {vocabQuery, &g.vocab, nil}} {
		v, err := readDocument(ctx, prepare, q.query, q.into)
		if err != nil {
			return nil, err
		}
		if q.raw != nil {
			*q.raw = v
		}
	}
	if assembleInGo {
		if why := assemblyRefusal(compiler); why != "" {
			g.notes = append(g.notes, "the decision is assembled in Rego: "+why)
		} else if g.assembly, err = prepareAssembly(ctx, g, rawCatalog, prepare, prepareDecision); err != nil {
			return nil, err
		} else if g.assembly == nil {
			g.notes = append(g.notes, "the decision is assembled in Rego: the catalog is not in the shape the Go assembly reads")
		}
	}
	if err := g.canary(ctx); err != nil {
		return nil, err
	}
	if g.matchTable, err = g.buildMatchTable(ctx); err != nil {
		return nil, fmt.Errorf("%w: match: %w", ErrBundleIncomplete, err)
	}
	return g, nil
}

// readDocument evaluates a document of the pack that reads no input, once, into into (through JSON), and
// returns it as evaluated. A query that does not compile is ErrBundleCompile; one that is not defined or
// not of into's shape, ErrBundleIncomplete.
func readDocument(ctx context.Context, prepare func(string) (rego.PreparedEvalQuery, error), query string, into any) (any, error) {
	pq, err := prepare(query)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBundleCompile, err)
	}
	rs, err := pq.Eval(ctx)
	if err != nil || len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, fmt.Errorf("%w: %s is not defined", ErrBundleIncomplete, query)
	}
	v := rs[0].Expressions[0].Value
	if err := remarshal(v, into); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBundleIncomplete, query, err)
	}
	return v, nil
}

// Decide evaluates data.faceguard.decision on facts. An error means the terminal is in an unchecked
// state and the caller must fail safe; it is never a compliant answer.
func (e *Engine) Decide(ctx context.Context, f *device.Facts) (device.Decision, error) {
	return e.active.Load().decide(ctx, factsToAST(f))
}

func (g *generation) decide(ctx context.Context, input ast.Value) (device.Decision, error) {
	if g.assembly != nil {
		v, err := g.evalFindings(ctx, input)
		if err != nil {
			return device.Decision{}, fmt.Errorf("evaluate findings: %w", err)
		}
		if f, ok := decodeFindings(v); ok {
			if d, ok := g.assembly.decide(&f); ok {
				return d, nil
			}
		}
		// Findings the Go assembly cannot place: the pack's own decision decides.
	}
	return g.decideInRego(ctx, input)
}

// decideInRego evaluates data.faceguard.decision itself.
func (g *generation) decideInRego(ctx context.Context, input ast.Value) (d device.Decision, err error) {
	v, err := evalOne(ctx, g.decision, input)
	if err != nil {
		return d, fmt.Errorf("evaluate decision: %w", err)
	}
	d, err = decodeDecision(v)
	if err != nil {
		return d, fmt.Errorf("evaluate decision: %w", err)
	}
	return d, nil
}

// evalOne runs a prepared query on a converted input and returns its single value. A panic inside OPA
// becomes an error: the caller fails safe instead of the agent dying.
func evalOne(ctx context.Context, pq rego.PreparedEvalQuery, input ast.Value, opts ...rego.EvalOption) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrEvalPanic, r)
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()
	rs, err := pq.Eval(ctx, append([]rego.EvalOption{
		rego.EvalParsedInput(input),
		rego.EvalMetrics(metrics.NoOp()),
		rego.EvalExternalCancel(cancel),
	}, opts...)...)
	if err != nil {
		return nil, err
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, ErrUndefined
	}
	return rs[0].Expressions[0].Value, nil
}

// assemblyName says where the active policy's decision is assembled (assemble.go).
func (g *generation) assemblyName() string {
	if g.assembly != nil {
		return "go"
	}
	return "rego"
}

func (e *Engine) logNotes(g *generation) {
	for _, n := range g.notes {
		e.log.Warn("policy evaluated the slower way", "note", n)
	}
}

// Info describes the active policy.
func (e *Engine) Info() Info { return e.active.Load().info }

// Catalog returns the controls of the active pack.
func (e *Engine) Catalog() map[string]Control { return e.active.Load().catalog }

// Categories returns the location categories the active pack knows, with their names.
func (e *Engine) Categories() map[string]device.Text {
	out := map[string]device.Text{}
	cats, _ := e.active.Load().vocab["categories"].(map[string]any)
	for k, v := range cats {
		m, _ := v.(map[string]any)
		zh, _ := m["zh"].(string)
		en, _ := m["en"].(string)
		out[k] = device.Text{ZH: zh, EN: en}
	}
	return out
}

// ConfigInt reads an integer tunable of data.faceguard.config, such as raw_image_max_s.
func (e *Engine) ConfigInt(key string) (int, bool) {
	return asInt(e.active.Load().config[key])
}

// Errors callers branch on.
var (
	ErrBundleUnsigned    = errors.New("bundle is not signed")
	ErrBundleSignature   = errors.New("bundle signature does not verify")
	ErrBundleNotNewer    = errors.New("bundle revision is not newer than the active one")
	ErrBundleCompile     = errors.New("bundle policy does not compile")
	ErrBundleIncomplete  = errors.New("bundle does not provide the faceguard pack")
	ErrBundleTooLarge    = errors.New("bundle is too large")
	ErrBundleMalformed   = errors.New("bundle is malformed")
	ErrNoVerificationKey = errors.New("no bundle verification key is configured")
	ErrEvalPanic         = errors.New("policy evaluation panicked")
	ErrUndefined         = errors.New("policy result is undefined")
)

// OPAVersion is the version of the embedded OPA.
var OPAVersion = version.Version
