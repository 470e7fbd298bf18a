package crdt

// Reg returns a copy of the register at (sec, p), if there is one.
func (d *Doc) Reg(sec Section, p Path) (Reg, bool) {
	if !sec.valid() {
		return Reg{}, false
	}
	r := d.secs[sec][p.String()]
	if r == nil || r.empty() {
		return Reg{}, false
	}
	c := *r
	c.W = cloneWrite(r.W)
	if r.Clr != nil {
		clr := *r.Clr
		c.Clr = &clr
	}
	return c, true
}
