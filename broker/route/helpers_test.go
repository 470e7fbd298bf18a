package route

import "testing"

// jsonMsg is a module message with a JSON body and some properties.
func jsonMsg(body string) *Message {
	return &Message{
		Source: Source{Device: "d1", Module: "sensor", Output: "temp"},
		App:    map[string]string{"temperature": "35", "Kind": "alarm", "$dollar": "app", "empty": ""},
		Sys: map[string]string{
			"contentType": "application/json", "contentEncoding": "utf-8",
			"connectionDeviceId": "d1", "connectionModuleId": "sensor", "messageId": "m-1",
			"dollar": "sys",
		},
		Body: []byte(body),
	}
}

const testBody = `{"t":31.5,"name":"pump","on":true,"nil":null,"a":{"b":{"c":"deep"},"arr":[10,{"x":"y"},[1]]},"obj":{}}`

// evalCond evaluates one condition against m and renders the result.
func evalCond(t *testing.T, cond string, m *Message) string {
	t.Helper()
	r, err := Parse("t", "FROM /* WHERE "+cond+" INTO $upstream")
	if err != nil {
		t.Fatalf("parse %q: %v", cond, err)
	}
	return r.cond.eval(newCtx(m)).String()
}
