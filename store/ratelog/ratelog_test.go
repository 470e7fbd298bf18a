package ratelog

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &Limiter{Every: 10 * time.Second, Now: func() time.Time { return now }}
	if ok, n := l.Allow("disk"); !ok || n != 0 {
		t.Fatalf("first event: Allow = %v, %d; want true, 0", ok, n)
	}
	for i := 0; i < 5; i++ {
		if ok, _ := l.Allow("disk"); ok {
			t.Fatalf("event %d within the period was let through", i)
		}
	}
	if ok, _ := l.Allow("topic"); !ok {
		t.Fatal("another key is limited by the first one's period")
	}
	now = now.Add(10 * time.Second)
	if ok, n := l.Allow("disk"); !ok || n != 5 {
		t.Fatalf("after the period: Allow = %v, %d; want true, 5 held back", ok, n)
	}
	if ok, _ := l.Allow("disk"); ok {
		t.Fatal("a new period started but the next event was let through at once")
	}
}

func TestZeroLimiter(t *testing.T) {
	var l Limiter
	if ok, _ := l.Allow("x"); !ok {
		t.Fatal("the zero Limiter refused the first event")
	}
	if ok, _ := l.Allow("x"); ok {
		t.Fatal("the zero Limiter has no period")
	}
}
