package main

import (
	"strings"
	"testing"
)

// TestSimHelp: the help says what an unset flag defaults to in words, never a sentinel ("-1ns").
func TestSimHelp(t *testing.T) {
	code, _, errOut := invoke(t, "sim", "--help")
	if code != 2 {
		t.Fatalf("exit %d, want 2\n%s", code, errOut)
	}
	for _, want := range []string{"-duration duration", "once the fleet is up; 0 runs until Ctrl-C (default: the scenario's)"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the help lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "-1ns") {
		t.Errorf("the help shows a sentinel default:\n%s", errOut)
	}
}

// TestSimDurationRefused: a negative or malformed duration is a usage error, not the scenario's.
func TestSimDurationRefused(t *testing.T) {
	for _, v := range []string{"-5s", "soon"} {
		code, _, errOut := invoke(t, "sim", "--duration", v)
		if code != 2 || !strings.Contains(errOut, "-duration") {
			t.Errorf("--duration %s: exit %d\n%s", v, code, errOut)
		}
	}
}
