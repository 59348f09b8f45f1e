package sim

import (
	"sync/atomic"
	"time"

	"github.com/faceguard/faceguard/internal/clock"
)

// JumpClock is a device's wall clock: the system clock shifted by an offset that jumps when told to, as a
// real one does when NTP steps it, an installer sets it by hand, or a flat RTC battery sends it back to
// the factory date. Timers run on elapsed time, which a jump of the wall clock does not change (Go's
// timers use the monotonic clock), so only what reads the time sees the jump: ages of files, expiries of
// commands, timestamps of the record. Give one to a device (DeviceOptions.Clock) and its terminal, its
// agent and its store all see the same jumps, as the programs of one device do.
type JumpClock struct {
	offset atomic.Int64 // nanoseconds
}

var _ clock.Clock = (*JumpClock)(nil)

// NewJumpClock returns a clock that reads the system time until it is made to jump.
func NewJumpClock() *JumpClock { return &JumpClock{} }

// Now is the system time plus the offset, without a monotonic reading: what a program reads from a wall
// clock that was stepped.
func (c *JumpClock) Now() time.Time {
	return time.Now().Round(0).Add(time.Duration(c.offset.Load()))
}

// AfterFunc runs f after d of elapsed time, whatever the wall clock does meanwhile.
func (c *JumpClock) AfterFunc(d time.Duration, f func()) clock.Timer { return time.AfterFunc(d, f) }

// Jump moves the wall clock by d (backwards when negative) and returns the new offset.
func (c *JumpClock) Jump(d time.Duration) time.Duration { return time.Duration(c.offset.Add(int64(d))) }

// Offset is how far the clock is from the system time.
func (c *JumpClock) Offset() time.Duration { return time.Duration(c.offset.Load()) }

// Reset sets the clock right again.
func (c *JumpClock) Reset() { c.offset.Store(0) }
