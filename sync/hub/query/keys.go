package query

// Keys is an index hint. When the condition is, or is an AND containing,
// deviceId = 'x' or deviceId IN ['x', …], it returns "deviceId", those
// ids and ok; a caller may then look those devices (or their modules) up
// instead of scanning, and must still Match each doc. The first such
// conjunct wins; non-string constants are dropped (no device id equals
// them), so values may be empty: nothing matches.
func (c *Condition) Keys() (field string, values []string, ok bool) {
	if c == nil || c.root == nil {
		return "", nil, false
	}
	for _, n := range conjuncts(c.root, nil) {
		if values, ok := deviceIDs(n); ok {
			return "deviceId", values, true
		}
	}
	return "", nil, false
}

func conjuncts(n node, out []node) []node {
	if l, ok := n.(*logicNode); ok && !l.or {
		return conjuncts(l.r, conjuncts(l.l, out))
	}
	return append(out, n)
}

func deviceIDs(n node) ([]string, bool) {
	switch n := n.(type) {
	case *cmpNode:
		if n.op != "=" {
			return nil, false
		}
		p, lit := n.l, n.r
		if !isDeviceID(p) {
			p, lit = lit, p
		}
		l, isLit := lit.(*litNode)
		if !isDeviceID(p) || !isLit {
			return nil, false
		}
		if s, ok := l.v.(string); ok {
			return []string{s}, true
		}
		return []string{}, true
	case *inNode:
		if n.nin || !isDeviceID(n.x) {
			return nil, false
		}
		values := []string{}
		for _, v := range n.list {
			if s, ok := v.(string); ok {
				values = append(values, s)
			}
		}
		return values, true
	}
	return nil, false
}

func isDeviceID(n node) bool {
	p, ok := n.(*pathNode)
	return ok && len(p.segs) == 1 && !p.segs[0].isIdx && p.segs[0].key == "deviceId"
}
