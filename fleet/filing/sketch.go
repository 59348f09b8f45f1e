package filing

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/axiomhq/hyperloglog"
)

// Precision is the sketches' precision: 2^14 = 16,384 registers, the library's default, sparse while
// small and dense (one byte a register) once large.
//
// Why 14: the standard error 1.04/√16384 ≈ 0.81 % is ±813 persons (one standard error) at the
// 100,000 threshold, small beside the 20,000-person warning band; a dense sketch is 16 KiB, about 22 KB
// in a JSON message (a twelfth of wire.MaxPayload), and the controller keeps one per device. Precision 16
// would halve the error at four times the size (64 KiB a device, 640 MB held for 10,000 devices). A
// device with a small gallery stays sparse: a few bytes a person and a near-exact count.
const Precision = 14

// The encoded size of a dense sketch of Precision: a 4-byte header, a 4-byte register count and one
// byte a register. MarshalBinary never writes more.
const denseSize = 8 + 1<<Precision

// MaxSketchBytes bounds what UnmarshalBinary and Merge read: a dense sketch is 16,392 bytes, a sparse one
// written by another encoder may be larger, anything beyond this is refused unread.
const MaxSketchBytes = 64 << 10

// RelativeError is the standard error of a sketch's estimate, 1.04/√m for m = 2^Precision registers
// (≈ 0.0081). The measured error is in TestMergedEstimateError and BENCHMARKS.md.
func RelativeError() float64 { return 1.04 / math.Sqrt(float64(uint(1)<<Precision)) }

// ErrBadSketch is wrapped by the errors of UnmarshalBinary and Merge for a sketch that cannot be used.
var ErrBadSketch = errors.New("bad subject sketch")

// Sketch is a HyperLogLog sketch of keyed subject hashes: one device's gallery, or a merged fleet. It
// never keeps a subject hash: each is hashed again (MetroHash64, unkeyed) and only a register update is
// kept — while the sketch is sparse, 25 bits of that second hash; once dense, one small number per
// register. Without the fleet's key nothing in it can be tied to a person. The zero Sketch is empty and
// ready to use; a Sketch is not safe for concurrent use.
type Sketch struct {
	hll *hyperloglog.Sketch
}

// NewSketch returns an empty sketch of Precision.
func NewSketch() *Sketch { return &Sketch{hll: newHLL()} }

func newHLL() *hyperloglog.Sketch {
	h, err := hyperloglog.NewSketch(Precision, true)
	if err != nil {
		panic(err) // Precision is a valid constant
	}
	return h
}

func (s *Sketch) sketch() *hyperloglog.Sketch {
	if s.hll == nil {
		s.hll = newHLL()
	}
	return s.hll
}

// Add counts a subject by its keyed hash (wire.SubjectHash: lower-case hex of HMAC-SHA256). The hash is
// hashed again and reduced to a register update; it is not kept. Every device must add the same string
// for the same person, so upper-case hex is folded to lower case.
func (s *Sketch) Add(subjectHash string) {
	var buf [64]byte // a keyed hash is 64 hex digits: no allocation
	s.sketch().Insert(appendLower(buf[:0], subjectHash))
}

// appendLower appends s with ASCII upper case folded to lower case.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// Estimate is the number of distinct subjects added, within RelativeError.
func (s *Sketch) Estimate() uint64 { return s.sketch().Estimate() }

// MarshalBinary encodes the sketch (the library's format, version 2) in at most 16,392 bytes: a sparse
// sketch whose encoding would be larger than the dense one is written dense.
func (s *Sketch) MarshalBinary() ([]byte, error) {
	data, err := s.sketch().MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode subject sketch: %w", err)
	}
	if len(data) <= denseSize {
		return data, nil
	}
	dense, err := hyperloglog.NewSketch(Precision, false)
	if err != nil {
		return nil, err
	}
	if err := dense.Merge(s.hll); err != nil {
		return nil, fmt.Errorf("encode subject sketch: %w", err)
	}
	return dense.MarshalBinary()
}

// UnmarshalBinary decodes a sketch from a device: at most MaxSketchBytes, of Precision, well formed. It
// never panics on garbage; on error s is unchanged.
func (s *Sketch) UnmarshalBinary(data []byte) (err error) {
	defer func() {
		// The decoder is a third-party parser fed by the network: a bug in it must cost one device's
		// sketch, not the controller.
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: decoder panicked: %v", ErrBadSketch, r)
		}
	}()
	h, err := decodeSketch(data)
	if err != nil {
		return err
	}
	s.hll = h
	return nil
}

func decodeSketch(data []byte) (*hyperloglog.Sketch, error) {
	switch {
	case len(data) == 0:
		return nil, fmt.Errorf("%w: empty", ErrBadSketch)
	case len(data) > MaxSketchBytes:
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrBadSketch, len(data), MaxSketchBytes)
	case len(data) >= 2 && data[1] != Precision:
		return nil, fmt.Errorf("%w: precision %d, want %d", ErrBadSketch, data[1], Precision)
	}
	h := new(hyperloglog.Sketch)
	if err := h.UnmarshalBinary(data); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSketch, err)
	}
	return h, nil
}

// MergeError lists the sketches Merge skipped, by their position in its arguments. The estimate Merge
// returns with it counts the others only: it is then a lower bound, and the caller must say so (an
// unreadable device is unknown, never zero).
type MergeError struct {
	Skipped []SkippedSketch
}

// SkippedSketch is one sketch Merge could not use.
type SkippedSketch struct {
	Index int
	Err   error
}

func (e *MergeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "merge subject sketches: %d skipped", len(e.Skipped))
	for i, s := range e.Skipped {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(e.Skipped)-i)
			break
		}
		fmt.Fprintf(&b, "; #%d: %v", s.Index, s.Err)
	}
	return b.String()
}

// Unwrap lets errors.Is(err, ErrBadSketch) match.
func (e *MergeError) Unwrap() []error {
	errs := make([]error, len(e.Skipped))
	for i, s := range e.Skipped {
		errs[i] = s.Err
	}
	return errs
}

// Merge decodes the devices' encoded sketches and returns the estimated number of distinct subjects
// across them. A sketch that cannot be decoded is skipped and reported in a *MergeError; the estimate
// then covers the rest. A nil or empty entry (a device that has not sent one) is skipped and reported
// the same way: the caller knows which device it was.
func Merge(sketches ...[]byte) (estimate uint64, err error) {
	m, skipped := mergeSketches(sketches)
	if len(skipped) > 0 {
		err = &MergeError{Skipped: skipped}
	}
	return m.Estimate(), err
}

// MergeSketch is Merge returning the merged sketch itself, for a controller that keeps it.
func MergeSketch(sketches ...[]byte) (*Sketch, error) {
	m, skipped := mergeSketches(sketches)
	if len(skipped) > 0 {
		return m, &MergeError{Skipped: skipped}
	}
	return m, nil
}

func mergeSketches(sketches [][]byte) (*Sketch, []SkippedSketch) {
	merged := NewSketch()
	var skipped []SkippedSketch
	for i, data := range sketches {
		var s Sketch
		if err := s.UnmarshalBinary(data); err != nil {
			skipped = append(skipped, SkippedSketch{Index: i, Err: err})
			continue
		}
		if err := mergeInto(merged, &s); err != nil {
			skipped = append(skipped, SkippedSketch{Index: i, Err: err})
		}
	}
	return merged, skipped
}

func mergeInto(merged, s *Sketch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: merge panicked: %v", ErrBadSketch, r)
		}
	}()
	if err := merged.hll.Merge(s.hll); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSketch, err)
	}
	return nil
}
