package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The machine is shared: a benchmark that allocates much is slowed down by anything else running, since
// the garbage collector's workers then compete for the cores. A run therefore measures the other work on
// the machine while it ran: the CPU time the whole machine spent, less what this command's children
// (the go commands and test binaries) spent, over the wall time. A check run compares it with the
// baseline's, so that a slowdown on a busier machine is read for what it may be.

// clockTicks is USER_HZ, the unit of /proc/stat on Linux.
const clockTicks = 100

// load is a reading of the machine's and this process's children's CPU time.
type load struct {
	at       time.Time
	machine  time.Duration // busy time of every CPU since boot
	children time.Duration // user + system time of the waited-for children of this process
	ok       bool
}

func readLoad() load {
	l := load{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return l
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return l
	}
	var busy uint64
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return l
		}
		busy += n
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return l
	}
	l.machine = time.Duration(busy) * time.Second / clockTicks
	l.children = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	l.ok = true
	return l
}

// othersSince is how many cores, on average, other work kept busy since start (NaN-free: -1 when it
// could not be read).
func othersSince(start load) float64 {
	end := readLoad()
	wall := end.at.Sub(start.at)
	if !start.ok || !end.ok || wall <= 0 {
		return -1
	}
	others := (end.machine - start.machine) - (end.children - start.children)
	return max(0, others.Seconds()/wall.Seconds())
}
