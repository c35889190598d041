package logbroker

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// kmsg (v1.15.0) decodes a tagged-field section by looping as many times
// as its announced count, even after the input ran out, so a 40-byte
// flexible request announcing ~2^32 tags would cost seconds of CPU. Before
// a flexible body reaches kmsg, checkTags walks it with the same layout
// kmsg reads and rejects it if any tag section announces more fields than
// the bytes left could hold (each field takes at least two bytes).
//
// The walker reads exactly what kmsg reads while kmsg's reader is still
// good (TestFlexLayoutsMatchKmsg checks every served flexible version
// against kmsg's encoder), so every tag count kmsg would loop on is seen
// here first. Compact array lengths need no check: kmsg already rejects
// one longer than the remaining bytes.

// flexLayouts is the wire layout of every served flexible request body,
// by api key, as space-separated tokens:
//
//	1 2 4 8    fixed-size fields (int8/bool, int16, int32, int64)
//	s          compact (nullable) string or bytes
//	[ ... ]    compact array whose elements have the enclosed layout
//	T          tagged-field section with no known tags
//	T{ n: ... } tagged-field section whose tag n holds the enclosed layout
//
// A layout applies from its version up to the next listed one.
var flexLayouts = map[int16][]struct {
	from   int16
	layout string
}{
	kmsg.Produce.Int16():         {{9, "s 2 4 [ s [ 4 s T ] T ] T"}},
	kmsg.Fetch.Int16():           {{12, "4 4 4 4 1 4 4 [ s [ 4 4 8 4 8 4 T ] T ] [ s [ 4 ] T ] s T{ 1: 4 8 T }"}},
	kmsg.ListOffsets.Int16():     {{6, "4 1 [ s [ 4 4 8 T ] T ] T"}},
	kmsg.Metadata.Int16():        {{9, "[ s T ] 1 1 1 T"}},
	kmsg.OffsetCommit.Int16():    {{8, "s 4 s s [ s [ 4 8 4 s T ] T ] T"}},
	kmsg.OffsetFetch.Int16():     {{6, "s [ s [ 4 ] T ] T"}, {7, "s [ s [ 4 ] T ] 1 T"}},
	kmsg.FindCoordinator.Int16(): {{3, "s 1 T"}},
	kmsg.JoinGroup.Int16():       {{6, "s 4 4 s s s [ s s T ] T"}},
	kmsg.Heartbeat.Int16():       {{4, "s 4 s s T"}},
	kmsg.LeaveGroup.Int16():      {{4, "s [ s s T ] T"}},
	kmsg.SyncGroup.Int16():       {{4, "s 4 s s [ s s T ] T"}, {5, "s 4 s s s s [ s s T ] T"}},
	kmsg.DescribeGroups.Int16():  {{5, "[ s ] 1 T"}},
	kmsg.ListGroups.Int16():      {{3, "T"}, {4, "[ s ] T"}},
	kmsg.ApiVersions.Int16():     {{3, "s s T"}},
	kmsg.CreateTopics.Int16():    {{5, "[ s 4 2 [ 4 [ 4 ] T ] [ s s T ] T ] 4 1 T"}},
	kmsg.DeleteTopics.Int16():    {{4, "[ s ] 4 T"}},
	kmsg.InitProducerID.Int16():  {{2, "s 4 T"}, {3, "s 4 8 2 T"}},
	kmsg.DescribeConfigs.Int16(): {{4, "[ 1 s [ s ] T ] 1 1 T"}},
}

// layoutNode is one parsed layout token.
type layoutNode struct {
	kind  byte         // 'f' fixed, 's' string, '[' array, 'T' tags
	size  int          // 'f': byte count
	elem  []layoutNode // '[': element layout
	known map[uint32][]layoutNode
}

// parsedLayouts caches flexLayouts parsed, by key and version.
var parsedLayouts = func() map[[2]int16][]layoutNode {
	out := make(map[[2]int16][]layoutNode)
	for key, versions := range flexLayouts {
		for i, v := range versions {
			nodes, rest := parseLayout(strings.Fields(v.layout))
			if len(rest) != 0 {
				panic(fmt.Sprintf("logbroker: layout of key %d v%d: unexpected %q", key, v.from, rest[0]))
			}
			last := supportedAPIs[key].max
			if i+1 < len(versions) {
				last = versions[i+1].from - 1
			}
			for ver := v.from; ver <= last; ver++ {
				out[[2]int16{key, ver}] = nodes
			}
		}
	}
	return out
}()

// parseLayout parses tokens up to a closing "]" or "}" (not consumed).
func parseLayout(toks []string) ([]layoutNode, []string) {
	var out []layoutNode
	for len(toks) > 0 {
		t := toks[0]
		switch t {
		case "]", "}":
			return out, toks
		case "1", "2", "4", "8":
			n, _ := strconv.Atoi(t)
			out = append(out, layoutNode{kind: 'f', size: n})
			toks = toks[1:]
		case "s", "T":
			out = append(out, layoutNode{kind: t[0]})
			toks = toks[1:]
		case "[":
			elem, rest := parseLayout(toks[1:])
			if len(rest) == 0 || rest[0] != "]" {
				panic("logbroker: unclosed [ in layout")
			}
			out = append(out, layoutNode{kind: '[', elem: elem})
			toks = rest[1:]
		case "T{":
			n := layoutNode{kind: 'T', known: map[uint32][]layoutNode{}}
			toks = toks[1:]
			for len(toks) > 0 && toks[0] != "}" {
				tag, err := strconv.ParseUint(strings.TrimSuffix(toks[0], ":"), 10, 32)
				if err != nil || !strings.HasSuffix(toks[0], ":") {
					panic(fmt.Sprintf("logbroker: bad known tag %q in layout", toks[0]))
				}
				var inner []layoutNode
				inner, toks = parseLayout(toks[1:])
				n.known[uint32(tag)] = inner
			}
			if len(toks) == 0 {
				panic("logbroker: unclosed T{ in layout")
			}
			out = append(out, n)
			toks = toks[1:]
		default:
			if strings.HasSuffix(t, ":") { // next known tag of an enclosing T{
				return out, toks
			}
			panic(fmt.Sprintf("logbroker: unknown layout token %q", t))
		}
	}
	return out, toks
}

// errTagBomb rejects a request announcing more tagged fields than it holds.
type errTagBomb struct{ count uint32 }

// tagWalker follows a body the way kmsg's reader does.
type tagWalker struct {
	src []byte
	bad bool // ran out: kmsg's reader would be invalidated here too
}

// uvarint reads a uvarint as kmsg does (uint32, at most 5 bytes).
func (w *tagWalker) uvarint() uint32 {
	v, n := kmsgUvarint(w.src)
	if n <= 0 {
		w.bad, w.src = true, nil
		return 0
	}
	w.src = w.src[n:]
	return v
}

func (w *tagWalker) skip(n int) {
	if n < 0 || n > len(w.src) {
		w.bad, w.src = true, nil
		return
	}
	w.src = w.src[n:]
}

// walk follows layout; it stops early (without error) once the input ran
// out, since kmsg then reads nothing more either.
func (w *tagWalker) walk(layout []layoutNode) error {
	for _, n := range layout {
		if w.bad {
			return nil
		}
		switch n.kind {
		case 'f':
			w.skip(n.size)
		case 's':
			// kmsg: length+1, 0 meaning null (or bad, for non-nullable
			// fields; either way nothing more is read from this field).
			if l := int(w.uvarint()) - 1; l > 0 {
				w.skip(l)
			}
		case '[':
			count := int32(w.uvarint()) - 1 // as kmsg's CompactArrayLen
			if len(w.src) < int(count) {
				w.bad, w.src = true, nil
				return nil
			}
			for i := int32(0); i < count && !w.bad; i++ {
				if err := w.walk(n.elem); err != nil {
					return err
				}
			}
		case 'T':
			count := w.uvarint()
			if uint64(count) > uint64(len(w.src))/2 {
				return errTagBomb{count}
			}
			for i := uint32(0); i < count && !w.bad; i++ {
				key := w.uvarint()
				size := int(w.uvarint())
				if w.bad || size > len(w.src) {
					w.bad, w.src = true, nil
					return nil
				}
				span := w.src[:size]
				w.src = w.src[size:]
				if inner, ok := n.known[key]; ok {
					sub := tagWalker{src: span}
					if err := sub.walk(inner); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// kmsgUvarint decodes like kmsg's kbin.Uvarint: up to 5 bytes into a
// uint32, n <= 0 when b is too short or the encoding overflows.
func kmsgUvarint(b []byte) (uint32, int) {
	var x uint32
	var s uint
	for i, c := range b {
		if i == 5 {
			return 0, -(i + 1)
		}
		if c < 0x80 {
			if i == 4 && c > 0x0f {
				return 0, -(i + 1)
			}
			return x | uint32(c)<<s, i + 1
		}
		x |= uint32(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

// checkTags rejects a flexible request body (after its header) that would
// make kmsg loop over more tagged fields than the body holds.
func checkTags(key, version int16, body []byte) error {
	layout, ok := parsedLayouts[[2]int16{key, version}]
	if !ok {
		return errCloseConn{fmt.Sprintf("no layout for flexible %s v%d", kmsg.NameForKey(key), version)}
	}
	w := tagWalker{src: body}
	if err := w.walk(layout); err != nil {
		return errCloseConn{fmt.Sprintf("%s v%d request announces %d tagged fields, more than it holds", kmsg.NameForKey(key), version, err.(errTagBomb).count)}
	}
	return nil
}

func (e errTagBomb) Error() string { return fmt.Sprintf("%d tagged fields", e.count) }
