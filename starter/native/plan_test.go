package native

import (
	"errors"
	"strings"
	"testing"

	"github.com/kerr-hpc/kerr/rpc/envelope"
)

func planEnvelope(t *testing.T, p *Plan) *envelope.Envelope {
	t.Helper()
	data, err := encodePlan("c1", p)
	if err != nil {
		t.Fatal(err)
	}
	env, err := envelope.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// Stage 2 takes only fds it received: an index out of range in the plan is refused before
// anything is built.
func TestDecodePlanChecksFDs(t *testing.T) {
	binds := func(fds ...int) []PlanBind {
		var b []PlanBind
		for _, fd := range fds {
			b = append(b, PlanBind{FD: fd, Source: "/s", Dest: "/d", What: "bind"})
		}
		return b
	}
	cases := []struct {
		name  string
		plan  Plan
		nfds  int
		valid bool
		say   string
	}{
		{"image and binds in range", Plan{Image: PlanImage{FD: 0}, Binds: binds(1, 2)}, 3, true, ""},
		{"fds may repeat", Plan{Image: PlanImage{FD: 0}, Binds: binds(0, 0)}, 1, true, ""},
		{"no fds received", Plan{Image: PlanImage{FD: 0}}, 0, false, "image names fd 0 of 0"},
		{"negative image fd", Plan{Image: PlanImage{FD: -1}}, 1, false, "image names fd -1"},
		{"image fd one past the end", Plan{Image: PlanImage{FD: 2}}, 2, false, "image names fd 2 of 2"},
		{"huge image fd", Plan{Image: PlanImage{FD: 1 << 30}}, 2, false, "image names fd"},
		{"bind fd past the end", Plan{Image: PlanImage{FD: 0}, Binds: binds(1, 3)}, 3, false, "bind bind names fd 3 of 3"},
		{"negative bind fd", Plan{Image: PlanImage{FD: 0}, Binds: binds(-2)}, 3, false, "names fd -2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := decodePlan(planEnvelope(t, &tc.plan), tc.nfds)
			if tc.valid {
				if err != nil || p == nil {
					t.Fatalf("refused: %v", err)
				}
				if p.Image.FD != tc.plan.Image.FD || len(p.Binds) != len(tc.plan.Binds) {
					t.Errorf("decoded %+v, want %+v", p, tc.plan)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted with %d fds", tc.nfds)
			}
			if !errors.Is(err, envelope.ErrInvalid) || !strings.Contains(err.Error(), tc.say) {
				t.Errorf("error %q, want ErrInvalid saying %q", err, tc.say)
			}
		})
	}
}

// The plan is decoded as strictly as the request: no unknown fields, no duplicate keys.
func TestDecodePlanIsStrict(t *testing.T) {
	for name, cfg := range map[string]string{
		"unknown field":  `{"caller":{"uid":0,"gid":0,"name":"root","home":"/root"},"action":"exec","image":{"fd":0,"path":"/i","format":"sif","maxLoop":0},"cwd":"/","home":"/","dev":"yes","sessionSize":1,"tmpSize":1,"noNewPrivs":true,"privileged":true}`,
		"duplicate key":  `{"action":"exec","action":"run","image":{"fd":0}}`,
		"not an object":  `["exec"]`,
		"trailing data":  `{"action":"exec"} {}`,
		"wrong type":     `{"image":{"fd":"0"}}`,
		"nested unknown": `{"image":{"fd":0,"uid":0}}`,
	} {
		env := &envelope.Envelope{Version: 1, Engine: EngineName, ID: "c1", Config: []byte(cfg)}
		if p, err := decodePlan(env, 1); err == nil {
			t.Errorf("%s: accepted: %+v", name, p)
		}
	}
}
