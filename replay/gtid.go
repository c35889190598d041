package replay

import (
	"fmt"
	"strconv"
	"strings"
)

// Position is a MariaDB GTID position (gtid_current_pos, gtid_slave_pos):
// per replication domain, the sequence number applied.
type Position map[uint32]uint64

// ParsePosition reads "0-1-100,1-2-7" (empty: nothing applied).
func ParsePosition(s string) (Position, error) {
	p := Position{}
	for _, g := range strings.Split(strings.TrimSpace(s), ",") {
		g = strings.TrimSpace(g)
		if g == "" {
			continue
		}
		domain, seq, err := parseGTID(g)
		if err != nil {
			return nil, err
		}
		p[domain] = max(p[domain], seq)
	}
	return p, nil
}

func parseGTID(g string) (domain uint32, seq uint64, err error) {
	parts := strings.Split(g, "-")
	if len(parts) != 3 {
		return 0, 0, fmt.Errorf("GTID %q: want domain-server-sequence, e.g. 0-1-100 (SELECT @@gtid_current_pos on the restored server)", g)
	}
	d, err1 := strconv.ParseUint(parts[0], 10, 32)
	_, err2 := strconv.ParseUint(parts[1], 10, 32)
	n, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, fmt.Errorf("GTID %q: want three numbers domain-server-sequence, e.g. 0-1-100", g)
	}
	return uint32(d), n, nil
}

// Applied reports whether the transaction that committed gtid is part of
// the position (a server at p has it).
func (p Position) Applied(gtid string) bool {
	d, n, err := parseGTID(gtid)
	if err != nil {
		return false
	}
	seq, ok := p[d]
	return ok && n <= seq
}
