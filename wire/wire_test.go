package wire

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)

func keys(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func cmd(typ, dev string) Command {
	return Command{ID: "c-0001", Type: typ, Dev: dev, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour),
		Args: json.RawMessage(`{"subject_hash":"` + strings.Repeat("ab", 32) + `"}`)}
}

func TestTopics(t *testing.T) {
	dev, kind, id, err := ParseDeviceTopic(ResultTopic("gate-01", "c-0001"))
	if err != nil || dev != "gate-01" || kind != KindResult || id != "c-0001" {
		t.Fatalf("result topic: %q %q %q %v", dev, kind, id, err)
	}
	for _, topic := range []string{StateTopic("gate-01"), BirthTopic("gate-01"), ComplianceTopic("gate-01"),
		SubjectsTopic("gate-01"), EventTopic("gate-01"), BundleGetTopic("gate-01")} {
		if _, _, _, err := ParseDeviceTopic(topic); err != nil {
			t.Errorf("%s: %v", topic, err)
		}
	}
	for _, bad := range []string{"faceguard/v1/dev/Gate/state", "faceguard/v1/dev/gate-01/selfie",
		"faceguard/v1/dev/gate-01", "faceguard/v2/dev/gate-01/state", "faceguard/v1/dev/gate-01/res/a/b",
		"faceguard/v1/dev/+/state", "faceguard/v1/dev/gate-01/res/" + strings.Repeat("x", 65)} {
		if _, _, _, err := ParseDeviceTopic(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if dev, typ, err := ParseCommandTopic(BroadcastTopic(CmdForgetSubject)); err != nil || dev != "*" || typ != CmdForgetSubject {
		t.Fatalf("broadcast: %q %q %v", dev, typ, err)
	}
	if _, _, err := ParseCommandTopic(CommandTopic("gate-01", "self-destruct")); err == nil {
		t.Fatal("accepted an unknown command type")
	}
	dev, rev, n, err := ParseChunkTopic(ChunkTopic("gate-01", "2026.11.2", 3))
	if err != nil || dev != "gate-01" || rev != "2026.11.2" || n != 3 {
		t.Fatalf("chunk topic: %q %q %d %v", dev, rev, n, err)
	}
	for _, bad := range []string{"faceguard/v1/cmd/gate-01/bundle/r1/-1", "faceguard/v1/cmd/gate-01/bundle/r1/01",
		"faceguard/v1/cmd/gate-01/bundle/r1/x", "faceguard/v1/cmd/gate-01/bundle/r 1/1"} {
		if _, _, _, err := ParseChunkTopic(bad); err == nil {
			t.Errorf("accepted chunk topic %q", bad)
		}
	}
}

// TestVerifyCommand: everything an attacker or a fault can do to a command, and the reason it gets.
func TestVerifyCommand(t *testing.T) {
	pub, priv := keys(t)
	_, otherPriv := keys(t)
	sign := func(c Command, k ed25519.PrivateKey) []byte {
		b, err := SignCommand(c, k, "ctl-1")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	forget := CommandTopic("gate-01", CmdForgetSubject)
	tests := []struct {
		name    string
		data    []byte
		topic   string
		now     time.Time
		wantErr error
	}{
		{"valid", sign(cmd(CmdForgetSubject, "gate-01"), priv), forget, t0.Add(time.Minute), nil},
		{"valid_broadcast", sign(cmd(CmdForgetSubject, Broadcast), priv), BroadcastTopic(CmdForgetSubject), t0, nil},
		{"unsigned", func() []byte {
			p, _ := json.Marshal(cmd(CmdForgetSubject, "gate-01"))
			b, _ := json.Marshal(SignedCommand{Payload: base64.RawURLEncoding.EncodeToString(p)})
			return b
		}(), forget, t0, ErrUnsigned},
		{"bare_json", func() []byte { b, _ := json.Marshal(cmd(CmdForgetSubject, "gate-01")); return b }(), forget, t0, ErrUnsigned},
		{"forged", sign(cmd(CmdForgetSubject, "gate-01"), otherPriv), forget, t0, ErrBadSignature},
		{"payload_swapped", func() []byte {
			var sc SignedCommand
			_ = json.Unmarshal(sign(cmd(CmdForgetSubject, "gate-01"), priv), &sc)
			c := cmd(CmdForgetSubject, "gate-01")
			c.Args = json.RawMessage(`{"subject_hash":"` + strings.Repeat("cd", 32) + `"}`)
			p, _ := json.Marshal(c)
			sc.Payload = base64.RawURLEncoding.EncodeToString(p)
			b, _ := json.Marshal(sc)
			return b
		}(), forget, t0, ErrBadSignature},
		{"expired", sign(cmd(CmdForgetSubject, "gate-01"), priv), forget, t0.Add(time.Hour), ErrExpired},
		{"future", sign(cmd(CmdForgetSubject, "gate-01"), priv), forget, t0.Add(-10 * time.Minute), ErrNotYetValid},
		{"other_device", sign(cmd(CmdForgetSubject, "gate-02"), priv), CommandTopic("gate-02", CmdForgetSubject), t0, ErrWrongDevice},
		{"topic_disagrees", sign(cmd(CmdForgetSubject, "gate-02"), priv), forget, t0, ErrWrongDevice},
		{"broadcast_on_device_topic", sign(cmd(CmdForgetSubject, Broadcast), priv), forget, t0, ErrWrongDevice},
		{"type_disagrees", sign(cmd(CmdRebirth, "gate-01"), priv), forget, t0, ErrBadCommand},
		{"not_json", []byte("{"), forget, t0, ErrBadCommand},
		{"wrong_topic", sign(cmd(CmdForgetSubject, "gate-01"), priv), "faceguard/v1/dev/gate-01/state", t0, ErrBadCommand},
		{"oversized", make([]byte, MaxPayload+1), forget, t0, ErrBadCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, hash, err := VerifyCommand(tt.data, tt.topic, "gate-01", pub, tt.now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && (c.ID != "c-0001" || len(hash) != 64) {
				t.Fatalf("command %+v, hash %q", c, hash)
			}
		})
	}
}

func TestSignCommandRefusesBadShapes(t *testing.T) {
	_, priv := keys(t)
	for name, edit := range map[string]func(*Command){
		"no_id":        func(c *Command) { c.ID = "" },
		"unknown_type": func(c *Command) { c.Type = "format-disk" },
		"bad_dev":      func(c *Command) { c.Dev = "Gate 1" },
		"backwards":    func(c *Command) { c.ExpiresAt = c.IssuedAt.Add(-time.Second) },
		"too_long":     func(c *Command) { c.ExpiresAt = c.IssuedAt.Add(MaxCommandLifetime + time.Second) },
	} {
		c := cmd(CmdForgetSubject, "gate-01")
		edit(&c)
		if _, err := SignCommand(c, priv, "ctl-1"); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: error %v, want ErrBadCommand", name, err)
		}
	}
}

func TestDecode(t *testing.T) {
	good := Event{Envelope: Envelope{V: 1, Type: TypeEvent, Dev: "gate-01", Session: 3, Seq: 9, TS: t0},
		EventID: "e1", Kind: EventViolationOpened}
	b, _ := json.Marshal(good)
	var e Event
	if err := Decode(b, "gate-01", TypeEvent, &e); err != nil || e.Seq != 9 {
		t.Fatalf("decode: %+v, %v", e, err)
	}
	if err := Decode(b, "gate-02", TypeEvent, &e); !errors.Is(err, ErrMessage) {
		t.Fatalf("a message from gate-01 on gate-02's topic: %v", err)
	}
	if err := Decode(b, "gate-01", TypeState, &e); !errors.Is(err, ErrMessage) {
		t.Fatalf("wrong type: %v", err)
	}
	if err := Decode([]byte(`{"v":2}`), "gate-01", TypeEvent, &e); !errors.Is(err, ErrMessage) {
		t.Fatalf("wrong version: %v", err)
	}
	if err := Decode(make([]byte, MaxPayload+1), "gate-01", TypeEvent, &e); !errors.Is(err, ErrMessage) {
		t.Fatalf("oversized: %v", err)
	}
}

func TestSubjectHash(t *testing.T) {
	k1, k2 := []byte("fleet-key-1"), []byte("fleet-key-2")
	h := SubjectHash(k1, "s-0001")
	if len(h) != 64 || h != SubjectHash(k1, "s-0001") {
		t.Fatal("not a stable 64-hex hash")
	}
	if h == SubjectHash(k2, "s-0001") || h == SubjectHash(k1, "s-0002") || strings.Contains(h, "s-0001") {
		t.Fatal("hash does not depend on key and reference, or shows the reference")
	}
}

func FuzzVerifyCommand(f *testing.F) {
	pub, priv := keys(f)
	good, _ := SignCommand(cmd(CmdForgetSubject, "gate-01"), priv, "ctl-1")
	f.Add(good, CommandTopic("gate-01", CmdForgetSubject))
	f.Add([]byte(`{"payload":"e30","sig":"AAAA","kid":"x"}`), BroadcastTopic(CmdRebirth))
	f.Add([]byte(`{"payload":"","sig":""}`), "faceguard/v1/cmd/gate-01/req/config")
	f.Add([]byte("null"), "faceguard/v1/cmd//req/")
	f.Fuzz(func(t *testing.T, data []byte, topic string) {
		c, _, err := VerifyCommand(data, topic, "gate-01", pub, t0)
		if err == nil && (c.Dev != "gate-01" && c.Dev != Broadcast) {
			t.Fatalf("accepted a command for %q", c.Dev)
		}
	})
}

func FuzzParseTopics(f *testing.F) {
	for _, s := range []string{StateTopic("a"), ResultTopic("a", "b"), ChunkTopic("a", "r1", 0),
		BroadcastTopic(CmdRebirth), "faceguard/v1/dev/a/res/", "////", "faceguard/v1/cmd/a/bundle/r/9999999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		if dev, _, _, err := ParseDeviceTopic(topic); err == nil && !ValidDeviceID(dev) {
			t.Fatalf("device topic %q gave device %q", topic, dev)
		}
		if dev, _, err := ParseCommandTopic(topic); err == nil && dev != Broadcast && !ValidDeviceID(dev) {
			t.Fatalf("command topic %q gave device %q", topic, dev)
		}
		if _, _, n, err := ParseChunkTopic(topic); err == nil && n < 0 {
			t.Fatalf("chunk topic %q gave chunk %d", topic, n)
		}
	})
}

func FuzzDecode(f *testing.F) {
	b, _ := json.Marshal(Compliance{Envelope: Envelope{V: 1, Type: TypeCompliance, Dev: "a", TS: t0}})
	f.Add(b)
	f.Add([]byte(`{"v":1,"type":"compliance","dev":"a","ts":"2026-01-01T00:00:00Z","counts":{"critical":-1}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Compliance
		if err := Decode(data, "a", TypeCompliance, &c); err == nil && (c.Dev != "a" || c.V != Version) {
			t.Fatalf("accepted %+v", c.Envelope)
		}
	})
}

// TestSubjectHasher: the reusable hasher gives SubjectHash for every reference, one after another.
func TestSubjectHasher(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	h := NewSubjectHasher(key)
	for _, ref := range []string{"s-0001", "", "s-0002", "人员-3", "s-0001"} {
		m := hmac.New(sha256.New, key)
		m.Write([]byte("faceguard/subject/v1\x00" + ref))
		want := hex.EncodeToString(m.Sum(nil))
		if got := h.Hash(ref); got != want || SubjectHash(key, ref) != want {
			t.Fatalf("%q: hasher %s, SubjectHash %s, HMAC-SHA256 %s", ref, got, SubjectHash(key, ref), want)
		}
	}
}
