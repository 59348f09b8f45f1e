package link

import (
	"testing"
	"time"
)

// The reconnect window starts at the jitter, doubles with each failed attempt, and stops at the cap.
func TestBackoffWindow(t *testing.T) {
	base, max := 5*time.Second, 60*time.Second
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 60 * time.Second, 60 * time.Second}
	for i, w := range want {
		if got := backoffWindow(base, max, int64(i+1)); got != w {
			t.Errorf("attempt %d: window %s, want %s", i+1, got, w)
		}
	}
	if got := backoffWindow(90*time.Second, max, 1); got != max {
		t.Errorf("a jitter above the cap: window %s, want %s", got, max)
	}
}

// Successive attempts draw from wider windows, and a success starts again from the first.
func TestBackoffResetsOnConnect(t *testing.T) {
	l := &Link{opts: Options{ReconnectJitter: time.Millisecond, MaxReconnectDelay: time.Second}}
	for range 3 {
		if d := l.backoff(); d < 0 || d >= time.Second {
			t.Fatalf("backoff %s outside [0, 1s)", d)
		}
	}
	if n := l.attempts.Load(); n != 3 {
		t.Fatalf("attempts %d, want 3", n)
	}
	l.attempts.Store(0) // what onConnect does
	if d := l.backoff(); d >= time.Millisecond {
		t.Errorf("first backoff after a success %s, want < 1ms", d)
	}
}
