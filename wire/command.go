package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"time"
)

// Command types (DESIGN §8).
const (
	CmdReevaluate    = "reevaluate"
	CmdForgetSubject = "forget-subject"
	CmdRebirth       = "rebirth"
	CmdBundleOffer   = "bundle-offer"
	CmdConfig        = "config"
)

// CommandTypes lists every command a v1 agent executes.
var CommandTypes = []string{CmdReevaluate, CmdForgetSubject, CmdRebirth, CmdBundleOffer, CmdConfig}

func knownCommand(typ string) bool {
	for _, t := range CommandTypes {
		if t == typ {
			return true
		}
	}
	return false
}

// Broadcast is Command.Dev for a command to every device.
const Broadcast = "*"

// Command is what the controller orders. It travels signed (SignedCommand); the agent acts only on a
// command whose signature verifies with the controller key it pins.
type Command struct {
	V         int             `json:"v"`
	ID        string          `json:"id"` // idempotency key
	Type      string          `json:"type"`
	Dev       string          `json:"dev"` // a device id, or "*" on the broadcast topic
	IssuedAt  time.Time       `json:"issued_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	Args      json.RawMessage `json:"args,omitempty"`
}

// SignedCommand is the payload on a command topic: the command's exact JSON bytes, and an Ed25519
// signature over them. Signing bytes rather than a re-encoded object leaves nothing to canonicalise.
type SignedCommand struct {
	Payload string `json:"payload"` // base64url (no padding) of the Command JSON
	KeyID   string `json:"kid"`
	Sig     string `json:"sig"` // base64url (no padding) Ed25519 signature over the decoded payload
}

// Limits of a command's validity window.
const (
	MaxCommandLifetime = 7 * 24 * time.Hour
	MaxClockSkew       = 5 * time.Minute
)

// Why a command is refused; the agent answers "rejected" with the reason.
var (
	ErrUnsigned     = errors.New("command is not signed")
	ErrBadSignature = errors.New("command signature does not verify")
	ErrExpired      = errors.New("command has expired")
	ErrNotYetValid  = errors.New("command is issued in the future")
	ErrWrongDevice  = errors.New("command is addressed to another device")
	ErrBadCommand   = errors.New("malformed command")
)

// SignCommand encodes and signs a command.
func SignCommand(c Command, key ed25519.PrivateKey, keyID string) ([]byte, error) {
	c.V = Version
	if err := c.validShape(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return json.Marshal(SignedCommand{
		Payload: base64.RawURLEncoding.EncodeToString(payload),
		KeyID:   keyID,
		Sig:     base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, payload)),
	})
}

// VerifyCommand checks a command received on topic by device self at time now: the signature with the
// pinned key, the shape, the address (the topic and the payload must agree, and name self or broadcast),
// and the validity window. It returns the command and the SHA-256 of its signed bytes (for the record;
// duplicates are told by CommandDigest).
func VerifyCommand(data []byte, topic, self string, key ed25519.PublicKey, now time.Time) (Command, string, error) {
	var c Command
	if len(data) > MaxPayload {
		return c, "", fmt.Errorf("%w: %d bytes, the limit is %d", ErrBadCommand, len(data), MaxPayload)
	}
	topicDev, topicType, err := ParseCommandTopic(topic)
	if err != nil {
		return c, "", fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	var sc SignedCommand
	if err := json.Unmarshal(data, &sc); err != nil {
		return c, "", fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	if sc.Sig == "" || sc.Payload == "" {
		return c, "", ErrUnsigned
	}
	payload, err := base64.RawURLEncoding.DecodeString(sc.Payload)
	if err != nil {
		return c, "", fmt.Errorf("%w: payload: %v", ErrBadCommand, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(sc.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize || len(key) != ed25519.PublicKeySize || !ed25519.Verify(key, payload, sig) {
		return c, "", ErrBadSignature
	}
	sum := sha256.Sum256(payload)
	hash := hex.EncodeToString(sum[:])
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, hash, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	if err := c.validShape(); err != nil {
		return c, hash, err
	}
	switch {
	case c.Type != topicType:
		return c, hash, fmt.Errorf("%w: a %s command on the %s topic", ErrBadCommand, c.Type, topicType)
	case c.Dev != topicDev:
		return c, hash, fmt.Errorf("%w: addressed to %q on the topic of %q", ErrWrongDevice, c.Dev, topicDev)
	case c.Dev != self && c.Dev != Broadcast:
		return c, hash, fmt.Errorf("%w: addressed to %q", ErrWrongDevice, c.Dev)
	case !now.Before(c.ExpiresAt):
		return c, hash, fmt.Errorf("%w: expired at %s", ErrExpired, c.ExpiresAt.Format(time.RFC3339))
	case c.IssuedAt.After(now.Add(MaxClockSkew)):
		return c, hash, fmt.Errorf("%w: issued at %s", ErrNotYetValid, c.IssuedAt.Format(time.RFC3339))
	}
	return c, hash, nil
}

func (c *Command) validShape() error {
	switch {
	case c.V != Version:
		return fmt.Errorf("%w: version %d", ErrBadCommand, c.V)
	case !validCommandID(c.ID):
		return fmt.Errorf("%w: id %q", ErrBadCommand, c.ID)
	case !knownCommand(c.Type):
		return fmt.Errorf("%w: unknown command type %q", ErrBadCommand, c.Type)
	case c.Dev != Broadcast && !ValidDeviceID(c.Dev):
		return fmt.Errorf("%w: device %q", ErrBadCommand, c.Dev)
	case c.IssuedAt.IsZero() || c.ExpiresAt.IsZero():
		return fmt.Errorf("%w: issued_at and expires_at are required", ErrBadCommand)
	case !c.ExpiresAt.After(c.IssuedAt):
		return fmt.Errorf("%w: expires before it is issued", ErrBadCommand)
	case c.ExpiresAt.Sub(c.IssuedAt) > MaxCommandLifetime:
		return fmt.Errorf("%w: valid for %s, the limit is %s", ErrBadCommand, c.ExpiresAt.Sub(c.IssuedAt), MaxCommandLifetime)
	}
	return nil
}

// CommandDigest names what a command means — its id, type and arguments — leaving out its address and
// validity window. A fleet-wide command is broadcast once and re-sent later, signed for one device,
// to a device that was away: both copies have the same digest, so the device answers the second from its
// journal instead of running it again, while a command that reuses an id for other arguments does not.
func CommandDigest(c Command) string {
	args := c.Args
	var buf bytes.Buffer
	if len(args) > 0 && json.Compact(&buf, args) == nil {
		args = buf.Bytes()
	}
	h := sha256.New()
	h.Write([]byte("faceguard/command/v1\n" + c.ID + "\n" + c.Type + "\n"))
	h.Write(args)
	return hex.EncodeToString(h.Sum(nil))
}

// ForgetArgs are the args of forget-subject: the keyed hash of the subject reference, never the reference.
type ForgetArgs struct {
	SubjectHash string `json:"subject_hash"`
}

// ForgetResult answers forget-subject.
type ForgetResult struct {
	Deleted  int      `json:"deleted"`
	Receipts []string `json:"receipts"`
}

// BundleOfferArgs offer a signed policy bundle to be pulled in chunks (research/mqtt.md §2.6).
type BundleOfferArgs struct {
	Revision    string   `json:"revision"`
	Size        int      `json:"size"`
	SHA256      string   `json:"sha256"`
	ChunkSize   int      `json:"chunk_size"`
	ChunkSHA256 []string `json:"chunk_sha256"`
}

// ConfigArgs change an agent's run-time settings; absent fields stay as they are.
type ConfigArgs struct {
	EvaluateIntervalS *int    `json:"evaluate_interval_s,omitempty"`
	HeartbeatS        *int    `json:"heartbeat_s,omitempty"`
	LogLevel          *string `json:"log_level,omitempty"`
}

// SubjectHash is the keyed hash that names a subject across the fleet without revealing who it is:
// HMAC-SHA256 under the fleet's subject key. The same person enrolled on ten doors has one hash.
func SubjectHash(key []byte, subjectRef string) string {
	return NewSubjectHasher(key).Hash(subjectRef)
}

// SubjectHasher computes SubjectHash for many references under one key with one HMAC, for a device
// that hashes its whole gallery (the filing sketch, finding the subject a forget-subject names): a new
// HMAC per subject was five allocations and about 800 bytes. Not safe for concurrent use.
type SubjectHasher struct {
	m   hash.Hash
	sum []byte
}

// NewSubjectHasher returns a hasher under key.
func NewSubjectHasher(key []byte) *SubjectHasher {
	return &SubjectHasher{m: hmac.New(sha256.New, key), sum: make([]byte, 0, sha256.Size)}
}

// Sum is the raw hash of subjectRef; it is valid until the next call.
func (h *SubjectHasher) Sum(subjectRef string) []byte {
	h.m.Reset()
	h.m.Write([]byte("faceguard/subject/v1\x00"))
	h.m.Write([]byte(subjectRef))
	h.sum = h.m.Sum(h.sum[:0])
	return h.sum
}

// Hash is SubjectHash of subjectRef: lower-case hex.
func (h *SubjectHasher) Hash(subjectRef string) string {
	return hex.EncodeToString(h.Sum(subjectRef))
}

// ParseEd25519PublicKey reads a PEM (PKIX) Ed25519 public key, the controller's command key.
func ParseEd25519PublicKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("controller key: not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("controller key: %w", err)
	}
	k, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("controller key: a %T, want Ed25519", pub)
	}
	return k, nil
}

// ParseEd25519PrivateKey reads a PEM (PKCS #8) Ed25519 private key.
func ParseEd25519PrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("controller key: not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("controller key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("controller key: a %T, want Ed25519", k)
	}
	return priv, nil
}
