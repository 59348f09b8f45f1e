package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/policies"
)

func compliantFacts(t testing.TB) device.Facts {
	t.Helper()
	b, err := os.ReadFile("../../device/testdata/facts/compliant_gate.json")
	if err != nil {
		t.Fatal(err)
	}
	f, err := device.ParseFacts(b)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func hotelFacts(t testing.TB) device.Facts {
	f := compliantFacts(t)
	f.Location.Category = "hotel_guest_room"
	f.Location.PublicPlace = true
	return f
}

type keyPair struct{ priv, pub []byte }

func ecKey(t testing.TB) keyPair {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(k)
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return keyPair{
		priv: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
		pub:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
	}
}

// packTree returns the built-in pack as a writable in-memory tree, with optional edits.
func packTree(t testing.TB, edits map[string]string) fstest.MapFS {
	t.Helper()
	tree := fstest.MapFS{}
	err := fs.WalkDir(policies.Pack(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.Pack(), path)
		tree[path] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range edits {
		if content == "" {
			delete(tree, name)
			continue
		}
		tree[name] = &fstest.MapFile{Data: []byte(content)}
	}
	return tree
}

func signedBundle(t testing.TB, key keyPair, revision string, edits map[string]string) []byte {
	t.Helper()
	raw, err := BuildBundle(context.Background(), packTree(t, edits), revision)
	if err != nil {
		t.Fatalf("build bundle: %v", err)
	}
	signed, err := SignBundle(raw, key.priv)
	if err != nil {
		t.Fatalf("sign bundle: %v", err)
	}
	return signed
}

func newEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	e, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestBuiltinPackDecides(t *testing.T) {
	e := newEngine(t, Options{})
	ctx := context.Background()
	f := compliantFacts(t)
	d, err := e.Decide(ctx, &f)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != device.StatusCompliant || len(d.Violations) != 0 || d.Actions == nil {
		t.Fatalf("compliant gate judged %+v", d)
	}
	h := hotelFacts(t)
	d, err = e.Decide(ctx, &h)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != device.StatusNonCompliant || d.Violations[0].Control != "FRM-13-PRIVATE-SPACE" || d.Counts.Critical != 1 {
		t.Fatalf("hotel room judged %+v", d)
	}
	if info := e.Info(); info.Revision != BuiltinRevision || info.Source != "builtin" {
		t.Fatalf("info %+v", info)
	}
	if _, ok := e.Catalog()["FRM-10-ALTERNATIVE"]; !ok {
		t.Fatal("catalog lacks FRM-10-ALTERNATIVE")
	}
	if n, ok := e.ConfigInt("raw_image_max_s"); !ok || n != 10 {
		t.Fatalf("raw_image_max_s = %d, %v", n, ok)
	}
	if _, ok := e.Categories()["hotel_guest_room"]; !ok {
		t.Fatal("vocabulary lacks hotel_guest_room")
	}
}

// TestFactsToASTMatchesJSON keeps the hand-written conversion equal to OPA's own JSON conversion.
func TestFactsToASTMatchesJSON(t *testing.T) {
	for _, f := range []device.Facts{compliantFacts(t), func() device.Facts {
		f := hotelFacts(t)
		f.Signage.VerifiedAt, f.PIA.Ref, f.Prompts, f.Egress = nil, nil, nil, nil
		f.MarkUnknown(device.GroupSubjects, "var/lib/terminal/gallery.db", errors.New("missing"))
		return f
	}()} {
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ast.ValueFromReader(strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if got := factsToAST(&f); got.Compare(want) != 0 {
			t.Fatalf("factsToAST differs from JSON:\n got %v\nwant %v", got, want)
		}
	}
	in := device.MatchInput{Subject: device.MatchSubject{Found: true, Consent: "separate", AgeBand: "adult"},
		Terminal: device.MatchTerminal{FaceRecognitionAllowed: true}}
	b, _ := json.Marshal(in)
	want, _ := ast.ValueFromReader(strings.NewReader(string(b)))
	if got := matchToAST(&in); got.Compare(want) != 0 {
		t.Fatalf("matchToAST differs from JSON:\n got %v\nwant %v", got, want)
	}
}

func TestMatch(t *testing.T) {
	e := newEngine(t, Options{})
	ok := device.MatchInput{
		Subject:  device.MatchSubject{Found: true, Consent: device.BasisSeparate, AgeBand: device.AgeAdult},
		Terminal: device.MatchTerminal{FaceRecognitionAllowed: true},
	}
	r, err := e.Match(context.Background(), &ok)
	if err != nil || !r.Allow {
		t.Fatalf("consented adult: %+v, %v", r, err)
	}
	minor := ok
	minor.Subject.AgeBand = device.AgeUnder14
	r, err = e.Match(context.Background(), &minor)
	if err != nil || r.Allow || r.Message.ZH == "" || r.Message.EN == "" {
		t.Fatalf("minor without guardian: %+v, %v", r, err)
	}
}

// TestBundles covers every way a bundle is accepted or refused. After a refusal the active policy is the
// one before it and still decides.
func TestBundles(t *testing.T) {
	ctx := context.Background()
	key, other := ecKey(t), ecKey(t)
	rsaKey := func() keyPair {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		return keyPair{
			priv: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}),
			pub:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		}
	}()
	tests := []struct {
		name    string
		key     keyPair // the engine's verification key
		bundle  func(t *testing.T) []byte
		wantErr error
	}{
		{"signed_ecdsa", key, func(t *testing.T) []byte { return signedBundle(t, key, "2", nil) }, nil},
		{"signed_rsa", rsaKey, func(t *testing.T) []byte { return signedBundle(t, rsaKey, "2", nil) }, nil},
		{"opa_build_signing_key", key, func(t *testing.T) []byte { return opaBuild(t, key, "2") }, nil},
		{"unsigned", key, func(t *testing.T) []byte {
			raw, err := BuildBundle(ctx, packTree(t, nil), "2")
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}, ErrBundleUnsigned},
		{"wrong_key", key, func(t *testing.T) []byte { return signedBundle(t, other, "2", nil) }, ErrBundleSignature},
		{"tampered_policy", key, func(t *testing.T) []byte {
			return tamper(t, signedBundle(t, key, "2", nil), "faceguard/controls.rego",
				func(b []byte) []byte { return append(b, []byte("\n# edited after signing\n")...) })
		}, ErrBundleSignature},
		{"tampered_data", key, func(t *testing.T) []byte {
			return tamper(t, signedBundle(t, key, "2", nil), "data.json",
				func(b []byte) []byte {
					return []byte(strings.Replace(string(b), `"raw_image_max_s":10`, `"raw_image_max_s":99999`, 1))
				})
		}, ErrBundleSignature},
		{"file_added", key, func(t *testing.T) []byte {
			return tamper(t, signedBundle(t, key, "2", nil), "faceguard/extra.rego",
				func([]byte) []byte { return []byte("package faceguard\n\nextra := true\n") })
		}, ErrBundleSignature},
		{"not_newer", key, func(t *testing.T) []byte { return signedBundle(t, key, "1", nil) }, ErrBundleNotNewer},
		{"does_not_compile", key, func(t *testing.T) []byte {
			raw := buildUnchecked(t, packTree(t, map[string]string{"faceguard/broken.rego": "package faceguard\n\nbroken := no_such_function(1)\n"}), "2")
			s, err := SignBundle(raw, key.priv)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, ErrBundleCompile},
		{"http_send_refused", key, func(t *testing.T) []byte {
			raw := buildUnchecked(t, packTree(t, map[string]string{"faceguard/phone_home.rego": "package faceguard\n\n" +
				"phone_home := http.send({\"method\": \"get\", \"url\": \"http://203.0.113.1/\"})\n"}), "2")
			s, err := SignBundle(raw, key.priv)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, ErrBundleCompile},
		{"net_lookup_refused", key, func(t *testing.T) []byte {
			raw := buildUnchecked(t, packTree(t, map[string]string{"faceguard/dns.rego": "package faceguard\n\n" +
				"dns := net.lookup_ip_addr(\"example.com\")\n"}), "2")
			s, err := SignBundle(raw, key.priv)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, ErrBundleCompile},
		{"breaks_the_private_space_floor", key, func(t *testing.T) []byte {
			// A bundle may tune the pack, but one that lets face recognition run in a hotel room is not a
			// faceguard pack: the canary refuses it.
			data, err := fs.ReadFile(policies.Pack(), "data.json")
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			doc["faceguard"].(map[string]any)["config"].(map[string]any)["private_categories"] = []string{}
			edited, _ := json.Marshal(doc)
			raw := buildUnchecked(t, packTree(t, map[string]string{"data.json": string(edited)}), "2")
			s, err := SignBundle(raw, key.priv)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, ErrBundleIncomplete},
		{"too_large", key, func(t *testing.T) []byte { return make([]byte, DefaultMaxBundleBytes+1) }, ErrBundleTooLarge},
		{"garbage", key, func(t *testing.T) []byte { return []byte("this is not a tarball") }, ErrBundleMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, Options{VerificationKey: tt.key.pub})
			if tt.name == "not_newer" {
				if _, err := e.ActivateBundle(ctx, signedBundle(t, tt.key, "1", nil)); err != nil {
					t.Fatal(err)
				}
			}
			before := e.Info()
			info, err := e.ActivateBundle(ctx, tt.bundle(t))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("refused a good bundle: %v", err)
				}
				if got := e.Info(); got.Revision != "2" || got.Source != "bundle" || got.SHA256 != info.SHA256 {
					t.Fatalf("active after activation: %+v", got)
				}
			} else {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				if got := e.Info(); got != before {
					t.Fatalf("active policy changed on refusal: %+v -> %+v", before, got)
				}
			}
			h := hotelFacts(t)
			if d, err := e.Decide(ctx, &h); err != nil || d.Counts.Critical != 1 {
				t.Fatalf("decision after activation attempt: %+v, %v", d, err)
			}
		})
	}
}

func TestNoVerificationKeyRefusesEveryBundle(t *testing.T) {
	e := newEngine(t, Options{})
	if _, err := e.ActivateBundle(context.Background(), signedBundle(t, ecKey(t), "2", nil)); !errors.Is(err, ErrNoVerificationKey) {
		t.Fatalf("error %v, want ErrNoVerificationKey", err)
	}
}

func TestBundleConfigOverride(t *testing.T) {
	ctx := context.Background()
	key := ecKey(t)
	data, _ := fs.ReadFile(policies.Pack(), "data.json")
	edited := strings.Replace(string(data), `"raw_image_max_s": 10`, `"raw_image_max_s": 60`, 1)
	if edited == string(data) {
		t.Fatal("data.json does not hold raw_image_max_s the way this test expects")
	}
	e := newEngine(t, Options{VerificationKey: key.pub})
	if _, err := e.ActivateBundle(ctx, signedBundle(t, key, "2", map[string]string{"data.json": edited})); err != nil {
		t.Fatal(err)
	}
	if n, _ := e.ConfigInt("raw_image_max_s"); n != 60 {
		t.Fatalf("raw_image_max_s = %d after the bundle set 60", n)
	}
	f := compliantFacts(t)
	f.RawImages = device.RawImages{Count: 1, OldestAgeS: 30}
	if d, err := e.Decide(ctx, &f); err != nil || d.Status != device.StatusCompliant {
		t.Fatalf("30 s capture under a 60 s limit: %+v, %v", d, err)
	}
}

// TestPersistence: a restart comes back on the last good bundle, and the revision floor survives even
// when the bundle file is lost, so a restart cannot be used to downgrade.
func TestPersistence(t *testing.T) {
	ctx := context.Background()
	key := ecKey(t)
	dir := t.TempDir()
	e := newEngine(t, Options{VerificationKey: key.pub, StateDir: dir})
	if _, err := e.ActivateBundle(ctx, signedBundle(t, key, "5", nil)); err != nil {
		t.Fatal(err)
	}
	e2 := newEngine(t, Options{VerificationKey: key.pub, StateDir: dir})
	if got := e2.Info(); got.Revision != "5" || got.Source != "bundle" {
		t.Fatalf("after restart: %+v", got)
	}
	if err := os.Remove(filepath.Join(dir, activeBundleFile)); err != nil {
		t.Fatal(err)
	}
	e3 := newEngine(t, Options{VerificationKey: key.pub, StateDir: dir})
	if got := e3.Info(); got.Revision != BuiltinRevision {
		t.Fatalf("without the file the built-in pack should be active, got %+v", got)
	}
	if _, err := e3.ActivateBundle(ctx, signedBundle(t, key, "4", nil)); !errors.Is(err, ErrBundleNotNewer) {
		t.Fatalf("downgrade to 4 after 5: %v", err)
	}
	// A damaged file is not loaded, and the built-in pack stays.
	if err := os.WriteFile(filepath.Join(dir, activeBundleFile), []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	e4 := newEngine(t, Options{VerificationKey: key.pub, StateDir: dir})
	if got := e4.Info(); got.Revision != BuiltinRevision {
		t.Fatalf("damaged bundle loaded: %+v", got)
	}
}

// TestConcurrentEvalWhileSwapping: decisions from many goroutines stay correct while bundles swap.
func TestConcurrentEvalWhileSwapping(t *testing.T) {
	ctx := context.Background()
	key := ecKey(t)
	e := newEngine(t, Options{VerificationKey: key.pub})
	bundles := make([][]byte, 6)
	for i := range bundles {
		bundles[i] = signedBundle(t, key, fmt.Sprint(i+1), nil)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			h := hotelFacts(t)
			for range 200 {
				d, err := e.Decide(ctx, &h)
				if err != nil || d.Counts.Critical != 1 {
					errs <- fmt.Errorf("decision during swap: %+v, %v", d, err)
					return
				}
			}
		})
	}
	for _, b := range bundles {
		if _, err := e.ActivateBundle(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if e.Info().Revision != "6" {
		t.Fatalf("revision %s after the last swap", e.Info().Revision)
	}
}

// TestEvalPanicBecomesError: a panic inside evaluation is an error the agent fails safe on, not a crash.
func TestEvalPanicBecomesError(t *testing.T) {
	pq, err := rego.New(
		rego.Query("data.x.y"),
		rego.Module("x.rego", "package x\n\ny := boom(1)\n"),
		rego.Function1(&rego.Function{Name: "boom", Decl: types.NewFunction(types.Args(types.A), types.A)}, func(rego.BuiltinContext, *ast.Term) (*ast.Term, error) {
			panic("policy exploded")
		}),
	).PrepareForEval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evalOne(context.Background(), pq, ast.NewObject()); !errors.Is(err, ErrEvalPanic) {
		t.Fatalf("error %v, want ErrEvalPanic", err)
	}
}

func TestEvalHonoursCancellation(t *testing.T) {
	e := newEngine(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := compliantFacts(t)
	if _, err := e.Decide(ctx, &f); err == nil {
		t.Fatal("a cancelled evaluation returned a decision")
	}
}

func TestRevisionNewer(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"1", BuiltinRevision, true},
		{BuiltinRevision, "1", false},
		{"2", "1", true},
		{"10", "9", true},
		{"9", "10", false},
		{"2026.11.10", "2026.11.2", true},
		{"2026.11.2", "2026.11.10", false},
		{"r-007", "r-6", true},
		{"5", "5", false},
		{"1.0.1", "1.0", true},
	} {
		if got := RevisionNewer(tt.a, tt.b); got != tt.want {
			t.Errorf("RevisionNewer(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestVerificationAlgorithm(t *testing.T) {
	if alg, err := VerificationAlgorithm(ecKey(t).pub); err != nil || alg != "ES256" {
		t.Fatalf("P-256: %s, %v", alg, err)
	}
	if _, err := VerificationAlgorithm([]byte("not a key")); err == nil {
		t.Fatal("accepted garbage")
	}
	if _, err := VerificationAlgorithm(ecKey(t).priv); err == nil {
		t.Fatal("accepted a private key as the verification key")
	}
}

// TestMatchTableIsThePolicy: every answer from the table equals a live evaluation of the policy.
func TestMatchTableIsThePolicy(t *testing.T) {
	e := newEngine(t, Options{})
	g := e.active.Load()
	if g.matchTable == nil {
		t.Fatal("the built-in pack is pure but got no match table")
	}
	ctx := context.Background()
	for i := range matchTableSize {
		in := matchInputAt(i)
		live, err := g.evalMatch(ctx, &in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.Match(ctx, &in)
		if err != nil {
			t.Fatal(err)
		}
		if got.Allow != live.Allow || !slices.Equal(got.Reasons, live.Reasons) || got.Message != live.Message {
			t.Fatalf("input %+v: table %+v, live %+v", in, got, live)
		}
	}
	// Outside the enumerated space the policy is asked live (and denies).
	odd := device.MatchInput{Subject: device.MatchSubject{Found: true, Consent: "verbal", AgeBand: device.AgeAdult},
		Terminal: device.MatchTerminal{FaceRecognitionAllowed: true}}
	if r, err := e.Match(ctx, &odd); err != nil || r.Allow {
		t.Fatalf("unknown consent basis: %+v, %v", r, err)
	}
}

func matchInputAt(i int) device.MatchInput {
	var in device.MatchInput
	in.Terminal.FaceRecognitionAllowed = i%2 == 1
	i /= 2
	in.Subject.Quarantined = i%2 == 1
	i /= 2
	in.Subject.GuardianConsent = i%2 == 1
	i /= 2
	in.Subject.AgeBand = matchAgeBands[i%4]
	i /= 4
	in.Subject.Withdrawn = i%2 == 1
	i /= 2
	in.Subject.Consent = matchConsents[i%4]
	i /= 4
	in.Subject.Found = i%2 == 1
	return in
}

func TestImpurePackGetsNoMatchTable(t *testing.T) {
	mods := map[string]*ast.Module{"x.rego": ast.MustParseModule("package x\n\nnow := time.now_ns()\n")}
	if pure(mods) {
		t.Fatal("a module calling time.now_ns counted as pure")
	}
	nested := map[string]*ast.Module{"y.rego": ast.MustParseModule("package y\n\nf := sprintf(\"%d\", [rand.intn(\"x\", 10)])\n")}
	if pure(nested) {
		t.Fatal("a nested nondeterministic call counted as pure")
	}
	if !pure(map[string]*ast.Module{"z.rego": ast.MustParseModule("package z\n\ng := time.parse_rfc3339_ns(\"2026-01-01T00:00:00Z\")\n")}) {
		t.Fatal("a deterministic module counted as impure")
	}
}
