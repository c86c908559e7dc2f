// ts_reference: the MPEG-TS fan-out the way acexy does it, as the reference that
// bench/ts_fanout.py measures hlsproxy against in the same command (acexy itself cannot be
// fetched here).
//
// One engine read per content. The read fills a buffer of -buffer-size bytes (acexy's flag;
// here rounded down to whole 188-byte packets, so that a joining client still gets whole
// packets), and each full buffer is written to every client in parallel, the next one only
// after all of them took it: acexy's lock-step multi-writer. There is no ring, no join
// point and no cut: what acexy lacks is left out, so that only the data path is compared.
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"sync"
)

const packet = 188

type client struct {
	mu     sync.Mutex
	w      http.ResponseWriter
	flush  http.Flusher
	gone   bool
	failed chan struct{}
}

func (c *client) write(chunk []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return
	}
	if _, err := c.w.Write(chunk); err != nil {
		c.gone = true
		close(c.failed)
		return
	}
	c.flush.Flush()
}

func (c *client) leave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.gone {
		c.gone = true
		close(c.failed)
	}
}

// stream is one content: its clients, written to in lock-step.
type stream struct {
	mu      sync.Mutex
	clients map[*client]struct{}
}

// Write sends one buffer to every client at once and returns when all have taken it.
func (s *stream) Write(chunk []byte) (int, error) {
	s.mu.Lock()
	targets := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		targets = append(targets, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range targets {
		wg.Add(1)
		go func(c *client) {
			defer wg.Done()
			c.write(chunk)
		}(c)
	}
	wg.Wait()
	return len(chunk), nil
}

type server struct {
	engine  string
	buffer  int
	mu      sync.Mutex
	streams map[string]*stream
}

func (srv *server) open(id string) (io.ReadCloser, error) {
	pid := make([]byte, 16)
	if _, err := rand.Read(pid); err != nil {
		return nil, err
	}
	query := url.Values{"id": {id}, "format": {"json"}, "pid": {hex.EncodeToString(pid)}}
	answer, err := http.Get(srv.engine + "/ace/getstream?" + query.Encode())
	if err != nil {
		return nil, err
	}
	defer answer.Body.Close()
	var started struct {
		Response *struct {
			PlaybackURL string `json:"playback_url"`
		} `json:"response"`
		Error *string `json:"error"`
	}
	if err := json.NewDecoder(answer.Body).Decode(&started); err != nil {
		return nil, err
	}
	if started.Response == nil {
		return nil, fmt.Errorf("the engine did not start %s", id)
	}
	media, err := http.Get(started.Response.PlaybackURL)
	if err != nil {
		return nil, err
	}
	return media.Body, nil
}

func (srv *server) run(id string, s *stream) {
	defer func() {
		srv.mu.Lock()
		delete(srv.streams, id)
		srv.mu.Unlock()
		s.mu.Lock()
		for c := range s.clients {
			c.leave()
		}
		s.mu.Unlock()
	}()
	body, err := srv.open(id)
	if err != nil {
		log.Print(err)
		return
	}
	defer body.Close()
	out := bufio.NewWriterSize(s, srv.buffer)
	if _, err := io.Copy(out, body); err != nil {
		log.Print(err)
	}
}

func (srv *server) getstream(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		http.Error(w, "missing id", http.StatusBadRequest)
		return
	}
	flush, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "no streaming", http.StatusInternalServerError)
		return
	}
	c := &client{w: w, flush: flush, failed: make(chan struct{})}
	w.Header().Set("Content-Type", "video/mp2t")
	w.WriteHeader(http.StatusOK)
	flush.Flush()
	srv.mu.Lock()
	s := srv.streams[id]
	if s == nil {
		s = &stream{clients: map[*client]struct{}{}}
		srv.streams[id] = s
		go srv.run(id, s)
	}
	s.mu.Lock()
	s.clients[c] = struct{}{}
	s.mu.Unlock()
	srv.mu.Unlock()
	select {
	case <-c.failed:
	case <-r.Context().Done():
	}
	c.leave()
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "where to listen")
	engine := flag.String("engine", "http://127.0.0.1:6878", "the engine's base URL")
	buffer := flag.Int("buffer-size", 64*1024, "bytes per write to the clients")
	flag.Parse()
	size := *buffer / packet * packet
	if size < packet {
		size = packet
	}
	srv := &server{engine: *engine, buffer: size, streams: map[string]*stream{}}
	http.HandleFunc("/ace/getstream", srv.getstream)
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, `{"status": "ok"}`)
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
