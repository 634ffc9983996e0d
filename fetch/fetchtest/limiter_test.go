package fetchtest

import (
	"context"
	"testing"
	"time"
)

// TestLimiterCatchesUp: a writer a little behind the schedule (its own
// writes take time) catches up rather than losing that time for good,
// which made a "20 MB/s" link give 14; one idle for long starts afresh.
func TestLimiterCatchesUp(t *testing.T) {
	l := &limiter{}
	l.set(1_000_000) // a byte a microsecond
	behind := time.Now().Add(-10 * time.Millisecond)
	l.next = behind
	if err := l.wait(context.Background(), nil, 1000); err != nil {
		t.Fatal(err)
	}
	if want := behind.Add(time.Millisecond); !l.next.Equal(want) {
		t.Errorf("10 ms behind: schedule moved to %v, want %v (caught up from where it was)", l.next, want)
	}
	l.next = time.Now().Add(-time.Second)
	before := time.Now()
	if err := l.wait(context.Background(), nil, 1000); err != nil {
		t.Fatal(err)
	}
	if l.next.Before(before.Add(time.Millisecond)) {
		t.Errorf("idle for a second: schedule at %v, want it restarted from now", l.next)
	}
}
