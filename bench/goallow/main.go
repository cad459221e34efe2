// An allow-all admission webhook in Go's net/http: the floor the Python stack is
// compared with (bench/bench_served.py, bench/bench_apiserver.py). It decodes the
// AdmissionReview (it needs the uid) and answers "allowed, no patch" or, with
// -response FILE, the fixed response fields in FILE (e.g. a recorded patch and
// warnings: then it costs the API server what applying our answer costs, at Go's speed).
//
//	go build -o /tmp/goallow bench/goallow/main.go
//	/tmp/goallow -addr 127.0.0.1:8444 -cert tls.crt -key tls.key
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"sync/atomic"
)

type review struct {
	Request struct {
		UID string `json:"uid"`
	} `json:"request"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8444", "listen address")
	cert := flag.String("cert", "tls.crt", "serving certificate (PEM)")
	key := flag.String("key", "tls.key", "its private key (PEM)")
	responseFile := flag.String("response", "", "JSON object of extra response fields (patchType, patch, warnings)")
	flag.Parse()
	extra := map[string]any{}
	if *responseFile != "" {
		data, err := os.ReadFile(*responseFile)
		if err != nil {
			log.Fatal(err)
		}
		if err := json.Unmarshal(data, &extra); err != nil {
			log.Fatal(err)
		}
	}
	var calls atomic.Int64
	http.HandleFunc("/mutate", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var in review
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Request.UID == "" {
			http.Error(w, `{"error":"not an AdmissionReview"}`, http.StatusBadRequest)
			return
		}
		response := map[string]any{"uid": in.Request.UID, "allowed": true}
		for k, v := range extra {
			response[k] = v
		}
		out := map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	http.HandleFunc("/calls", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]int64{"calls": calls.Load()})
	})
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	log.Fatal(http.ListenAndServeTLS(*addr, *cert, *key, nil))
}
