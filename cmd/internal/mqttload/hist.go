package main

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: values below 2^subBits ns are
// counted exactly, larger ones in 2^(subBits-1) buckets per power of two, so
// a bucket is at most 1/64 of its value wide and its midpoint is within 0.8 %
// of any value in it. That is HDR histogram's scheme without its dependency;
// one histogram per publishing goroutine keeps recording free of locks.
const subBits = 7

const half = 1 << (subBits - 1)

type histogram struct {
	counts []uint64
	n      uint64
	max    int64
}

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	l := bits.Len64(uint64(v))
	if l <= subBits {
		return int(v)
	}
	shift := l - subBits
	return shift*half + int(v>>shift)
}

// bucketRange returns the smallest value of bucket i and the bucket's width.
func bucketRange(i int) (lo, width int64) {
	if i < 1<<subBits {
		return int64(i), 1
	}
	shift := i/half - 1
	m := int64(i - shift*half)
	return m << shift, 1 << shift
}

func (h *histogram) record(d time.Duration) {
	v := int64(d)
	i := bucketOf(v)
	if i >= len(h.counts) {
		n := max(2*len(h.counts), i+1, 1<<subBits)
		c := make([]uint64, n)
		copy(c, h.counts)
		h.counts = c
	}
	h.counts[i]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) merge(o *histogram) {
	if len(o.counts) > len(h.counts) {
		c := make([]uint64, len(o.counts))
		copy(c, h.counts)
		h.counts = c
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the value at quantile q (0 < q ≤ 1): the midpoint of the
// bucket holding the ceil(q·n)-th smallest sample, never above the maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, w := bucketRange(i)
			return time.Duration(min(lo+(w-1)/2, h.max))
		}
	}
	return time.Duration(h.max)
}
