package fleet_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/store/sqlstore"
	"github.com/faceguard/faceguard/internal/testbroker"
	"github.com/faceguard/faceguard/internal/testpg"
	"github.com/faceguard/faceguard/policies"
	"github.com/faceguard/faceguard/sim"
	"github.com/faceguard/faceguard/wire"
)

func TestMain(m *testing.M) { os.Exit(testpg.Run(m)) }

const patience = 60 * time.Second

type fleetKeys struct {
	cmdPub     ed25519.PublicKey
	cmdPriv    ed25519.PrivateKey
	subject    []byte
	bundlePriv []byte
	bundlePub  []byte
}

func newKeys(t testing.TB) fleetKeys {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	bk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(bk)
	pubDER, _ := x509.MarshalPKIXPublicKey(&bk.PublicKey)
	return fleetKeys{cmdPub: pub, cmdPriv: priv, subject: []byte("controller-test-subject-key-0123456789"),
		bundlePriv: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
		bundlePub:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})}
}

func startController(t testing.TB, brokerURL, dsn, id, group string, k fleetKeys) *fleet.Controller {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), dsn, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := fleet.NewController(fleet.Options{Store: st, BrokerURL: brokerURL, ClientID: id, ShareGroup: group,
		CommandKey: k.cmdPriv, SubjectKey: k.subject})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); st.Close() })
	return c
}

func startFleet(t testing.TB, brokerURL string, k fleetKeys, eng *engine.Engine, profiles []sim.Profile) *sim.Fleet {
	t.Helper()
	if eng == nil {
		var err error
		if eng, err = engine.New(context.Background(), engine.Options{VerificationKey: k.bundlePub}); err != nil {
			t.Fatal(err)
		}
	}
	fl, err := sim.StartFleet(context.Background(), sim.FleetOptions{Dir: t.TempDir(), Profiles: profiles, BrokerURL: brokerURL,
		ControllerKey: k.cmdPub, SubjectKey: k.subject, Engine: eng, EvaluateEvery: time.Hour, ReconnectJitter: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fl.Stop() })
	return fl
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", patience, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitCommand(t testing.TB, c *fleet.Controller, id string) []fleet.CommandResult {
	t.Helper()
	var results []fleet.CommandResult
	eventually(t, "every device to answer "+id, func() bool {
		_, rs, err := c.Store().Command(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		results = rs
		for i := range rs {
			if !rs[i].Final() {
				return false
			}
		}
		return true
	})
	return results
}

// TestControllerIngestsAndCommands: a controller on SQLite, real agents on a real broker. It sees every
// device, its violations, and answers to a fleet-wide forget with receipts from the doors that held the
// person.
func TestControllerIngestsAndCommands(t *testing.T) {
	k := newKeys(t)
	b := testbroker.Mochi(t)
	c := startController(t, b.URL(), filepath.Join(t.TempDir(), "fleet.db"), "ctl", "", k)
	profiles := []sim.Profile{
		{ID: "gate-1", Site: "estate", Residents: []string{"resident-1"}},
		{ID: "gate-2", Site: "estate", Residents: []string{"resident-1"}},
		{ID: "room-1", Site: "hotel", HotelRoom: true, PublicPlace: true},
	}
	startFleet(t, b.URL(), k, nil, profiles)
	ctx := context.Background()
	eventually(t, "three devices with their summaries", func() bool {
		ov, err := c.Store().Overview(ctx)
		return err == nil && ov.Total.Devices == 3 && ov.Total.Compliant+ov.Total.NonCompliant == 3
	})
	eventually(t, "the hotel room's critical violation", func() bool {
		vs, _, _ := c.Store().OpenViolations(ctx, fleet.ViolationQuery{Dev: "room-1"})
		return len(vs) == 1 && vs[0].Control == "FRM-13-PRIVATE-SPACE" && vs[0].Message.ZH != ""
	})
	d, err := c.Store().Device(ctx, "room-1")
	if err != nil || d.Control.FaceRecognitionAllowed || !d.Control.AlternativesRequiredOn || d.Audit.Seq == 0 {
		t.Fatalf("room-1 as the fleet sees it: %+v, %v", d, err)
	}

	cmd, err := c.Forget(ctx, "resident-1", "test")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cmd.Args), "resident-1") || strings.Contains(string(cmd.Payload), "resident-1") {
		t.Fatal("the subject reference left the controller")
	}
	results := waitCommand(t, c, cmd.ID)
	deleted := map[string]int{}
	for _, r := range results {
		var fr wire.ForgetResult
		if r.Status != wire.ResultSucceeded || json.Unmarshal(r.Result, &fr) != nil {
			t.Fatalf("%s answered %+v", r.Dev, r)
		}
		deleted[r.Dev] = fr.Deleted
		if fr.Deleted != len(fr.Receipts) {
			t.Fatalf("%s deleted %d with %d receipts", r.Dev, fr.Deleted, len(fr.Receipts))
		}
	}
	if len(deleted) != 3 || deleted["gate-1"] != 1 || deleted["gate-2"] != 1 || deleted["room-1"] != 0 {
		t.Fatalf("deleted per device: %v", deleted)
	}
}

// TestPendingCommandsResentOnBirth: a device that is away when a fleet command is issued gets it, with the
// same id, when it comes back and announces its birth.
func TestPendingCommandsResentOnBirth(t *testing.T) {
	k := newKeys(t)
	mq := testbroker.StartMosquitto(t, testbroker.MosquittoOptions{})
	c := startController(t, mq.URL(), filepath.Join(t.TempDir(), "fleet.db"), "ctl", "", k)
	fl := startFleet(t, mq.URL(), k, nil, []sim.Profile{{ID: "door-1", Site: "s"}, {ID: "door-2", Site: "s"}})
	ctx := context.Background()
	eventually(t, "both devices known", func() bool {
		ids, _ := c.Store().DeviceIDs(ctx)
		return len(ids) == 2
	})
	away := fl.Device("door-2")
	if err := away.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "door-2 offline", func() bool {
		d, _ := c.Store().Device(ctx, "door-2")
		return d.State == wire.StateOffline
	})
	// Clear door-2's broker session so only the controller's re-send can bring it the command.
	cl := testbroker.Client(t, mq.URL(), "door-2")
	cl.Disconnect(100)
	cmd, err := c.Issue(ctx, fleet.IssueRequest{Type: wire.CmdReevaluate, Target: wire.Broadcast, Args: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "door-1 answers", func() bool {
		_, rs, _ := c.Store().Command(ctx, cmd.ID)
		for _, r := range rs {
			if r.Dev == "door-1" && r.Status == wire.ResultSucceeded {
				return true
			}
		}
		return false
	})
	_, rs, _ := c.Store().Command(ctx, cmd.ID)
	for _, r := range rs {
		if r.Dev == "door-2" && r.Final() {
			t.Fatalf("door-2 answered while away: %+v", r)
		}
	}
	// The agent comes back with its own store (a new session); its terminal's files are written anew.
	if err := os.RemoveAll(filepath.Join(away.Dir(), "root")); err != nil {
		t.Fatal(err)
	}
	back, err := sim.StartDevice(ctx, sim.DeviceOptions{Dir: away.Dir(), Profile: sim.Profile{ID: "door-2", Site: "s"},
		Engine: mustEngine(t), BrokerURL: mq.URL(), ControllerKey: k.cmdPub, SubjectKey: k.subject, EvaluateEvery: time.Hour,
		ReconnectJitter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Stop()
	for _, r := range waitCommand(t, c, cmd.ID) {
		if r.Status != wire.ResultSucceeded {
			t.Fatalf("%s: %+v", r.Dev, r)
		}
	}
}

func mustEngine(t testing.TB) *engine.Engine {
	e, err := engine.New(context.Background(), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestBundlePushedInChunks: a signed bundle offered to the fleet is pulled by each device in 64 KiB
// chunks over MQTT, verified and activated; a bundle signed by another key is refused and the active
// policy stays.
func TestBundlePushedInChunks(t *testing.T) {
	k := newKeys(t)
	b := testbroker.Mochi(t)
	c := startController(t, b.URL(), filepath.Join(t.TempDir(), "fleet.db"), "ctl", "", k)
	ctx := context.Background()
	// Each device its own engine, as on real terminals.
	var devs []*sim.Device
	for _, id := range []string{"kiosk-1", "kiosk-2"} {
		eng, err := engine.New(ctx, engine.Options{VerificationKey: k.bundlePub})
		if err != nil {
			t.Fatal(err)
		}
		d, err := sim.StartDevice(ctx, sim.DeviceOptions{Dir: t.TempDir(), Profile: sim.Profile{ID: id, Site: "s"}, Engine: eng,
			BrokerURL: b.URL(), ControllerKey: k.cmdPub, SubjectKey: k.subject, EvaluateEvery: time.Hour, ReconnectJitter: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Stop()
		devs = append(devs, d)
	}
	eventually(t, "both devices known", func() bool {
		ids, _ := c.Store().DeviceIDs(ctx)
		return len(ids) == 2
	})
	// A bundle of several 64 KiB chunks: the pack plus a data file that does not compress.
	tree := fstest.MapFS{}
	err := fs.WalkDir(policies.Pack(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.Pack(), p)
		tree[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	noise := make([]byte, 100<<10)
	_, _ = rand.Read(noise)
	tree["faceguard/padding/data.json"] = &fstest.MapFile{Data: []byte(`{"blob":"` + hex.EncodeToString(noise) + `"}`)}
	raw, err := engine.BuildBundle(ctx, tree, "2026.11.24-1")
	if err != nil {
		t.Fatal(err)
	}
	signed, err := engine.SignBundle(raw, k.bundlePriv)
	if err != nil {
		t.Fatal(err)
	}
	if chunks := (len(signed) + wire.ChunkSize - 1) / wire.ChunkSize; chunks < 2 {
		t.Fatalf("the bundle is %d bytes: one chunk does not test the pull", len(signed))
	}
	cmd, err := c.OfferBundle(ctx, "2026.11.24-1", signed, wire.Broadcast, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range waitCommand(t, c, cmd.ID) {
		if r.Status != wire.ResultSucceeded {
			t.Fatalf("%s: %+v", r.Dev, r)
		}
	}
	eventually(t, "both devices on the new policy", func() bool {
		for _, id := range []string{"kiosk-1", "kiosk-2"} {
			d, _ := c.Store().Device(ctx, id)
			if d.Policy != "2026.11.24-1" {
				return false
			}
		}
		return true
	})
	// A bundle signed by another key: every device refuses it and keeps the policy it has.
	other := newKeys(t)
	forged, _ := engine.BuildBundle(ctx, policies.Pack(), "2026.11.24-2")
	forged, _ = engine.SignBundle(forged, other.bundlePriv)
	cmd, err = c.OfferBundle(ctx, "2026.11.24-2", forged, wire.Broadcast, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range waitCommand(t, c, cmd.ID) {
		if r.Status != wire.ResultFailed || !strings.Contains(r.Reason, "signature") {
			t.Fatalf("%s took a bundle signed by another key: %+v", r.Dev, r)
		}
	}
	for _, d := range devs {
		if rev := d.Agent(); rev == nil {
			t.Fatal("no agent")
		}
	}
	d, _ := c.Store().Device(ctx, "kiosk-1")
	if d.Policy != "2026.11.24-1" {
		t.Fatalf("policy after a refused bundle: %s", d.Policy)
	}
}

// TestTwoControllersShareAFleet: two controllers on one PostgreSQL, with shared subscriptions on
// Mosquitto, split the devices' per-message topics between them; together they record every event once.
func TestTwoControllersShareAFleet(t *testing.T) {
	k := newKeys(t)
	mq := testbroker.StartMosquitto(t, testbroker.MosquittoOptions{})
	dsn := testpg.Shared(t)
	c1 := startController(t, mq.URL(), dsn, "ctl-1", "faceguard", k)
	c2 := startController(t, mq.URL(), dsn, "ctl-2", "faceguard", k)
	var profiles []sim.Profile
	for i := range 12 {
		p := sim.Profile{ID: fmt.Sprintf("door-%02d", i), Site: "campus"}
		if i%2 == 0 {
			p.CoercivePrompt = true // an event each
		}
		profiles = append(profiles, p)
	}
	startFleet(t, mq.URL(), k, nil, profiles)
	ctx := context.Background()
	eventually(t, "twelve devices and six violations in the shared store", func() bool {
		ov, err := c1.Store().Overview(ctx)
		vs, _, _ := c2.Store().OpenViolations(ctx, fleet.ViolationQuery{Control: "FRM-12-NO-COERCION"})
		return err == nil && ov.Total.Devices == 12 && len(vs) == 6
	})
	evs, err := c1.Store().Events(ctx, "", []string{wire.EventViolationOpened}, time.Time{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range evs {
		seen[e.Dev]++
	}
	for dev, n := range seen {
		if n != 1 {
			t.Fatalf("%s's violation recorded %d times", dev, n)
		}
	}
	// Both controllers did part of the work: their metrics count the events each applied. A metric
	// is counted just after its store commit, so the last of them may trail the store by a moment.
	var n1, n2 int
	eventually(t, "the controllers' metrics to count the six events", func() bool {
		n1, n2 = ingestedEvents(t, c1), ingestedEvents(t, c2)
		return n1+n2 >= 6
	})
	if n1 == 0 || n2 == 0 {
		t.Fatalf("events applied: controller 1 %d, controller 2 %d — the shared subscription did not split them", n1, n2)
	}
	t.Logf("events applied: controller 1 %d, controller 2 %d", n1, n2)
}

func ingestedEvents(t *testing.T, c *fleet.Controller) int {
	srv := httptest.NewServer(c.MetricsHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, `faceguard_messages_ingested_total{kind="event"}`) {
			var n int
			fmt.Sscanf(strings.Fields(line)[1], "%d", &n)
			return n
		}
	}
	return 0
}
