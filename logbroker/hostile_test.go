package logbroker

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// fillRequest sets every field of v reachable by reflection to a
// non-default value, with one or two elements in every array and an
// unknown tag in every struct, so that the encoding exercises every field
// and tag section of the version.
func fillRequest(v reflect.Value, top bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type().Elem().Kind() == reflect.String {
			s := "nullable"
			v.Set(reflect.ValueOf(&s))
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		fillRequest(v.Elem(), top)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(kmsg.Tags{}) {
			var tags kmsg.Tags
			tags.Set(77, []byte("unknown"))
			v.Set(reflect.ValueOf(tags))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if top && v.Type().Field(i).Name == "Version" || !v.Field(i).CanSet() {
				continue
			}
			fillRequest(v.Field(i), false)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte("some bytes"))
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := 0; i < 2; i++ {
			fillRequest(s.Index(i), false)
		}
		v.Set(s)
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			fillRequest(v.Index(i), false)
		}
	case reflect.String:
		v.SetString("name")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(3)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(5)
	}
}

// flexBodies encodes a filled request of every served flexible version.
func flexBodies(t testing.TB) map[[2]int16][]byte {
	out := make(map[[2]int16][]byte)
	for key, vr := range supportedAPIs {
		for ver := vr.min; ver <= vr.max; ver++ {
			req := kmsg.RequestForKey(key)
			req.SetVersion(ver)
			if !req.IsFlexible() {
				continue
			}
			fillRequest(reflect.ValueOf(req), true)
			req.SetVersion(ver)
			out[[2]int16{key, ver}] = req.AppendTo(nil)
		}
	}
	if len(out) < len(supportedAPIs) {
		t.Fatalf("only %d flexible versions", len(out))
	}
	return out
}

// TestFlexRequestsDecode checks that every served flexible request, with
// every field and tag section filled, decodes from its own encoding, and
// that the decoder survives the body cut anywhere.
func TestFlexRequestsDecode(t *testing.T) {
	for kv, body := range flexBodies(t) {
		name := kmsg.NameForKey(kv[0])
		req := kmsg.RequestForKey(kv[0])
		req.SetVersion(kv[1])
		if err := req.ReadFrom(body); err != nil {
			t.Errorf("%s v%d: kmsg cannot read its own encoding: %v", name, kv[1], err)
		}
		// A body cut anywhere must not make the decoder panic.
		header := rawFrame(req, 9)[4:]
		header = header[:len(header)-len(req.AppendTo(nil))]
		for i := range body {
			decodeRequest(append(bytes.Clone(header), body[:i]...))
		}
	}
}

// decodeWithin decodes frame, failing the test if that takes over 5s.
func decodeWithin(t *testing.T, what string, frame []byte) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, _, err := decodeRequest(frame)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: decoding still running after 5s", what)
		return nil
	}
}

// TestTagBombRejected puts a tag count of 2^32-1 at every position of every
// served flexible request. kmsg before v1.15.1 looped over such a count for
// about a minute even after the input ran out (the broker then guarded
// against it itself); kmsg now stops once its reader runs out, and every
// such frame must be decoded or rejected at once.
func TestTagBombRejected(t *testing.T) {
	bomb := []byte{0xff, 0xff, 0xff, 0xff, 0x0f}
	var closeConn errCloseConn
	// The 40-byte example of the package doc.
	av := kmsg.NewPtrApiVersionsRequest()
	av.SetVersion(3)
	frame := rawFrame(av, 1)[4:]
	frame = append(frame[:len(frame)-1], bomb...)
	if err := decodeWithin(t, "ApiVersions v3 announcing 2^32-1 tags", frame); !errors.As(err, &closeConn) {
		t.Fatalf("ApiVersions v3 announcing 2^32-1 tags: %v, want rejected", err)
	}

	// kmsg reads Fetch's top-level tag 1 (ReplicaState, a struct with its
	// own tag section) in every version: a bomb inside it.
	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(12)
	frame = rawFrame(fetch, 2)[4:]
	inner := append(make([]byte, 12), bomb...)
	frame = append(append(frame[:len(frame)-1], 1, 1, byte(len(inner))), inner...)
	if err := decodeWithin(t, "Fetch v12 with a bomb in ReplicaState", frame); !errors.As(err, &closeConn) {
		t.Fatalf("Fetch v12 with a bomb in ReplicaState: %v, want rejected", err)
	}

	tried, rejected := 0, 0
	for kv, body := range flexBodies(t) {
		req := kmsg.RequestForKey(kv[0])
		req.SetVersion(kv[1])
		header := rawFrame(req, 9)[4:]
		header = header[:len(header)-len(req.AppendTo(nil))]
		for i := 0; i <= len(body); i++ {
			for _, replace := range []int{0, 1} {
				if i+replace > len(body) {
					continue
				}
				f := append(append(append(bytes.Clone(header), body[:i]...), bomb...), body[i+replace:]...)
				tried++
				what := fmt.Sprintf("%s v%d with a tag bomb at byte %d (replacing %d)", kmsg.NameForKey(kv[0]), kv[1], i, replace)
				if decodeWithin(t, what, f) != nil {
					rejected++
				}
			}
		}
	}
	if rejected == 0 {
		t.Fatalf("none of %d bombed frames rejected", tried)
	}
	t.Logf("%d bombed frames, %d rejected", tried, rejected)
}
