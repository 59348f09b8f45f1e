package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// GenesisHash is the prev_hash of the first entry of the chain, and the hash of the head of an empty one.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// hashDomain starts every hashed message, so an entry hash cannot be mistaken for any other SHA-256 the
// project computes (facts, payloads, receipts).
const hashDomain = "faceguard/audit/v1\n"

// ChainHash is the hash of an audit entry: lower-case hex of
//
//	SHA-256("faceguard/audit/v1\n" + prev_hash + "\n" + seq + "\n" + at + "\n" + kind + "\n" + payload)
//
// with seq in decimal and payload the exact JSON bytes stored.
func ChainHash(prevHash string, seq uint64, at, kind string, payload []byte) string {
	h := sha256.New()
	var num [20]byte
	h.Write([]byte(hashDomain))
	h.Write([]byte(prevHash))
	h.Write([]byte{'\n'})
	h.Write(strconv.AppendUint(num[:0], seq, 10))
	h.Write([]byte{'\n'})
	h.Write([]byte(at))
	h.Write([]byte{'\n'})
	h.Write([]byte(kind))
	h.Write([]byte{'\n'})
	h.Write(payload)
	return hex.EncodeToString(h.Sum(nil))
}

// Head is the last entry of the chain, by seq and hash. The agent reports it to the fleet, which keeps it
// as an anchor outside the device: given to Verify, it reveals a chain cut short or rewritten since.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Head returns the chain's head: (0, GenesisHash) when the chain is empty.
func (s *Store) Head(ctx context.Context) (uint64, string, error) {
	return head(ctx, s.db)
}

// Head returns the chain's head as this transaction sees it, its own appends included.
func (tx *Tx) Head() (Head, error) {
	seq, hash, err := head(tx.ctx, tx.tx)
	return Head{Seq: seq, Hash: hash}, err
}

func head(ctx context.Context, q querier) (uint64, string, error) {
	h := Head{Hash: GenesisHash}
	err := q.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&h.Seq, &h.Hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, "", wrapErr("audit head", err)
	}
	return h.Seq, h.Hash, nil
}

// Entries returns up to limit audit entries from seq fromSeq on, in order; all of them when limit ≤ 0.
func (s *Store) Entries(ctx context.Context, fromSeq uint64, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = -1
	}
	var out []AuditEntry
	err := s.eachEntry(ctx, `WHERE seq >= ? ORDER BY seq LIMIT ?`, []any{fromSeq, limit}, func(e AuditEntry) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, wrapErr("audit entries", err)
	}
	return out, nil
}

// eachEntry streams audit rows. One SELECT reads one snapshot, so a walk sees a consistent chain while the
// agent goes on appending.
func (s *Store) eachEntry(ctx context.Context, where string, args []any, fn func(AuditEntry) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, at, kind, payload, prev_hash, hash FROM audit `+where, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var e AuditEntry
		var payload []byte
		if err := rows.Scan(&e.Seq, &e.At, &e.Kind, &payload, &e.PrevHash, &e.Hash); err != nil {
			return err
		}
		e.Payload = payload
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// VerifyOptions are what Verify knows besides the chain itself.
type VerifyOptions struct {
	// ExpectHead is a head recorded earlier outside the device (the fleet's anchor). The chain must reach
	// it, with the same hash at that seq: otherwise its tail was truncated or it was rewritten.
	ExpectHead *Head
}

// VerifyResult is the outcome of a verification. OK is true when there are no Problems.
type VerifyResult struct {
	OK       bool      `json:"ok"`
	Rows     int       `json:"rows"`
	Head     Head      `json:"head"`
	Problems []Problem `json:"problems,omitempty"`
}

// Problem is one thing wrong with the chain, at a seq (0 when it is about a line of an export that could
// not be read).
type Problem struct {
	Seq     uint64 `json:"seq"`
	Message string `json:"message"`
}

// Verify walks the chain in seq order and reports every problem it finds: edited rows (the hash does not
// match the content), deleted rows (gaps in seq), reordered or replaced rows (prev_hash does not match the
// hash of the row before), a chain that does not start at seq 1 with the genesis prev_hash and, given
// VerifyOptions.ExpectHead, a chain that was truncated or rewritten since that head was recorded.
//
// An error is returned only when the chain could not be read; what is wrong with it is in the result.
func (s *Store) Verify(ctx context.Context, opts ...VerifyOptions) (VerifyResult, error) {
	v := newVerifier(opts)
	err := s.eachEntry(ctx, `ORDER BY seq`, nil, func(e AuditEntry) error {
		v.add(e)
		return nil
	})
	if err != nil {
		return VerifyResult{}, wrapErr("verify audit", err)
	}
	return v.finish(), nil
}

// Export writes the audit chain to w as JSON lines, one entry per line, in seq order:
//
//	{"seq":1,"at":"2025-06-01T08:00:00.000000000Z","kind":"start","payload":{…},"prev_hash":"000…","hash":"3f…"}
//
// An auditor can re-verify it without faceguard (VerifyJSONLines does the same): for each line, seq must be
// one more than the line before (1 for the first), prev_hash must equal the hash of the line before (64
// zeros for the first), and hash must be the lower-case hex SHA-256 of
//
//	"faceguard/audit/v1\n" + prev_hash + "\n" + seq + "\n" + at + "\n" + kind + "\n" + payload
//
// where payload is the payload exactly as written in the line: the bytes after `"payload":` up to the last
// `,"prev_hash":` of the line. (A JSON parser that re-serialises the payload may change its spacing, escapes
// or numbers, so take the bytes from the line.) In Python:
//
//	import hashlib, json, sys
//	prev, seq = "0" * 64, 0
//	for line in open(sys.argv[1], "rb"):
//	    e, seq = json.loads(line), seq + 1
//	    payload = line[line.index(b'"payload":') + 10 : line.rindex(b',"prev_hash":')]
//	    msg = "faceguard/audit/v1\n%s\n%d\n%s\n%s\n" % (prev, seq, e["at"], e["kind"])
//	    assert e["seq"] == seq and e["prev_hash"] == prev, seq
//	    assert hashlib.sha256(msg.encode() + payload).hexdigest() == e["hash"], seq
//	    prev = e["hash"]
//	print("ok", seq, prev)
//
// The last line's seq and hash should then match the head the fleet recorded for the device.
func (s *Store) Export(ctx context.Context, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	err := s.eachEntry(ctx, `ORDER BY seq`, nil, func(e AuditEntry) error {
		line = appendExportLine(line[:0], e)
		_, err := bw.Write(line)
		return err
	})
	if err == nil {
		err = bw.Flush()
	}
	return wrapErr("export audit", err)
}

// appendExportLine writes the fields in a fixed order and the payload verbatim, which encoding/json would
// not guarantee (it re-compacts a RawMessage).
func appendExportLine(b []byte, e AuditEntry) []byte {
	str := func(s string) []byte { q, _ := json.Marshal(s); return q }
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"at":`...)
	b = append(b, str(e.At)...)
	b = append(b, `,"kind":`...)
	b = append(b, str(e.Kind)...)
	b = append(b, `,"payload":`...)
	if json.Valid(e.Payload) && !bytes.ContainsAny(e.Payload, "\r\n") {
		b = append(b, e.Payload...)
	} else {
		// Only an edited row gets here. Exported as a JSON string, it keeps the line readable and fails
		// the hash check, as it must.
		b = append(b, str(string(e.Payload))...)
	}
	b = append(b, `,"prev_hash":`...)
	b = append(b, str(e.PrevHash)...)
	b = append(b, `,"hash":`...)
	b = append(b, str(e.Hash)...)
	return append(b, "}\n"...)
}

// VerifyJSONLines verifies an export (see Export) without the database, with the same checks as Verify.
// A line that is not an audit entry is reported as a problem; an error is returned only when r fails.
func VerifyJSONLines(r io.Reader, opts ...VerifyOptions) (VerifyResult, error) {
	v := newVerifier(opts)
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var e struct {
				Seq      *uint64         `json:"seq"`
				At       *string         `json:"at"`
				Kind     *string         `json:"kind"`
				Payload  json.RawMessage `json:"payload"`
				PrevHash *string         `json:"prev_hash"`
				Hash     *string         `json:"hash"`
			}
			switch uerr := json.Unmarshal(line, &e); {
			case uerr != nil:
				v.problem(0, fmt.Sprintf("line %d: not an audit entry: %v", n, uerr))
			case e.Seq == nil || e.At == nil || e.Kind == nil || e.Payload == nil || e.PrevHash == nil || e.Hash == nil:
				v.problem(0, fmt.Sprintf("line %d: not an audit entry: a field is missing", n))
			case *e.Seq == 0:
				v.problem(0, fmt.Sprintf("line %d: seq 0 is not a sequence number", n))
			default:
				v.add(AuditEntry{Seq: *e.Seq, At: *e.At, Kind: *e.Kind, Payload: e.Payload, PrevHash: *e.PrevHash, Hash: *e.Hash})
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return VerifyResult{}, fmt.Errorf("store: verify export: line %d: %w", n, err)
		}
	}
	return v.finish(), nil
}

type verifier struct {
	expect  *Head
	res     VerifyResult
	last    Head // the last entry taken into the chain
	started bool
}

func newVerifier(opts []VerifyOptions) *verifier {
	v := &verifier{last: Head{Hash: GenesisHash}}
	for _, o := range opts {
		if o.ExpectHead != nil {
			v.expect = o.ExpectHead
		}
	}
	return v
}

func (v *verifier) problem(seq uint64, msg string) {
	v.res.Problems = append(v.res.Problems, Problem{Seq: seq, Message: msg})
}

func (v *verifier) missing(from, to uint64, where, why string) {
	if from == to {
		v.problem(from, fmt.Sprintf("seq %d is missing %s: %s", from, where, why))
	} else {
		v.problem(from, fmt.Sprintf("seq %d to %d are missing %s: %s", from, to, where, why))
	}
}

func (v *verifier) add(e AuditEntry) {
	v.res.Rows++
	if v.started && e.Seq <= v.last.Seq { // only in an export: the database orders by its primary key
		v.problem(e.Seq, fmt.Sprintf("seq %d comes after seq %d: entries are duplicated or out of order", e.Seq, v.last.Seq))
		return
	}
	// Problems come out in seq order: a gap before this row, then this row's own.
	gap := false
	switch {
	case !v.started && e.Seq > 1:
		v.missing(1, e.Seq-1, "at the start of the chain", "rows were deleted")
		gap = true
	case v.started && e.Seq > v.last.Seq+1:
		v.missing(v.last.Seq+1, e.Seq-1, fmt.Sprintf("after %d", v.last.Seq), "rows were deleted")
		gap = true
	}
	if ChainHash(e.PrevHash, e.Seq, e.At, e.Kind, e.Payload) != e.Hash {
		v.problem(e.Seq, fmt.Sprintf("seq %d: hash does not match its content: the row was edited", e.Seq))
	} else if !json.Valid(e.Payload) {
		v.problem(e.Seq, fmt.Sprintf("seq %d: payload is not JSON: the row was rewritten", e.Seq))
	}
	switch {
	case gap:
		// e's prev_hash names a deleted row, so comparing it with the row before the gap says nothing more.
	case !v.started && e.PrevHash != GenesisHash:
		v.problem(e.Seq, "seq 1: prev_hash is not the genesis value (64 zeros): the start of the chain was replaced")
	case v.started && e.PrevHash != v.last.Hash:
		v.problem(e.Seq, fmt.Sprintf("seq %d: prev_hash does not match the hash of seq %d: rows were reordered or replaced",
			e.Seq, v.last.Seq))
	}
	if v.expect != nil && v.expect.Seq == e.Seq && v.expect.Hash != e.Hash {
		v.problem(e.Seq, fmt.Sprintf("seq %d: hash differs from the expected head %s: the chain was rewritten",
			e.Seq, v.expect.Hash))
	}
	v.last, v.started = Head{Seq: e.Seq, Hash: e.Hash}, true
}

func (v *verifier) finish() VerifyResult {
	if v.expect != nil && v.expect.Seq > v.last.Seq {
		v.missing(v.last.Seq+1, v.expect.Seq,
			fmt.Sprintf("at the end of the chain (the expected head is seq %d)", v.expect.Seq), "rows were truncated")
	}
	v.res.Head = v.last
	v.res.OK = len(v.res.Problems) == 0
	return v.res
}
