package protocol_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// The envelope's bytes are the wire shape every client already reads (the
// hub wrote them with its own struct, the edge with a map), with the Azure
// IoT service SDKs' "Message" before it: pinned here.
func TestWriteErrorWireShape(t *testing.T) {
	rec := httptest.NewRecorder()
	protocol.WriteError(rec, 404, "DeviceNotFound", `no device "d1"`)
	if got, want := rec.Body.String(), `{"Message":"ErrorCode:DeviceNotFound;no device \"d1\"","code":"DeviceNotFound","message":"no device \"d1\""}`+"\n"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
	if rec.Code != 404 || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("status %d, Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	e := protocol.ReadError(rec.Code, rec.Body.Bytes())
	if *e != (protocol.APIError{Status: 404, Code: "DeviceNotFound", Message: `no device "d1"`}) {
		t.Errorf("ReadError = %+v", e)
	}
	if got := e.Error(); got != `404 DeviceNotFound: no device "d1"` {
		t.Errorf("Error() = %q", got)
	}
}

func TestReadErrorOtherBodies(t *testing.T) {
	for _, c := range []struct {
		status      int
		body        string
		code, msg   string
		msgContains string
	}{
		{502, "<html>\n<b>Bad   gateway</b>\n</html>", "Bad Gateway", "<html> <b>Bad gateway</b> </html>", ""},
		{400, `{"code":400001,"message":"bad\nthing"}`, "400001", "bad thing", ""},
		{401, `{"message":"expired"}`, "Unauthorized", "expired", ""},
		{599, "", "status 599", "", ""},
		{500, "\xff" + strings.Repeat("x", 300), "Internal Server Error", "", "…"},
	} {
		e := protocol.ReadError(c.status, []byte(c.body))
		if e.Code != c.code || (c.msgContains == "" && e.Message != c.msg) || !strings.Contains(e.Message, c.msgContains) {
			t.Errorf("ReadError(%d, %q) = %+v", c.status, c.body, e)
		}
		if len(e.Message) > 210 {
			t.Errorf("ReadError(%d, …) kept %d bytes of the body", c.status, len(e.Message))
		}
	}
}
