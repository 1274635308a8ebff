package pgstore

import (
	"container/list"
	"slices"
	"sync"
	"time"
)

// headerCache keeps, on this node, the headers and summaries of bodies
// by body id (Headers and Summaries): a body never changes and its id is
// never given to another, so an entry is never stale. Which body each
// UID has (and whether it is still there) is the database's: 16 bytes a
// message where the header is some hundreds, or, for a mailbox whose
// body map (below) is current, one row. It holds at most
// maxBytes (least recently used entries go first) and empties itself
// when unused for idle, so that an idle node keeps no more memory than
// before. Written here: an LRU of a few dozen lines did not warrant a
// dependency.
type headerCache struct {
	maxBytes int
	idle     time.Duration

	mu      sync.Mutex
	entries map[headerKey]*list.Element // of *headerEntry
	lru     list.List                   // most recent first
	bytes   int
	used    time.Time   // last get or put
	timer   *time.Timer // empties the cache once idle; nil when empty
	closed  bool

	maps       map[mailboxKey]*bodyMap
	mapEntries int // in all maps
}

// A bodyMap is the body id of every message of a mailbox, as of the
// mailbox's change stamp xid: every write transaction stamps the
// mailboxes it changes with its own id (change_xid, the change feed's
// rule), so while the stamp is the same, so are the messages.
type bodyMap struct {
	xid, validity int64
	bodies        map[uint32]int64 // UID -> body id
}

type mailboxKey struct {
	user string
	id   uint64
}

// Bounds of the body maps: mailboxes of more messages are read a call
// at a time, and the maps of all mailboxes hold at most maxMapEntries.
// Variables for the tests.
var (
	maxMapMessages = 20000
	maxMapEntries  = 100000
)

// bodyMap returns the map of mailbox k, nil if none.
func (c *headerCache) bodyMap(k mailboxKey) *bodyMap {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.maps[k]
	if m != nil {
		c.used = time.Now()
	}
	return m
}

// putBodyMap keeps m as mailbox k's map (in place of any other), others
// going when all would hold more than maxMapEntries.
func (c *headerCache) putBodyMap(k mailboxKey, m *bodyMap) {
	if len(m.bodies) > maxMapEntries/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if old := c.maps[k]; old != nil {
		c.mapEntries -= len(old.bodies)
		delete(c.maps, k)
	}
	for ok := range c.maps {
		if c.mapEntries+len(m.bodies) <= maxMapEntries {
			break
		}
		c.mapEntries -= len(c.maps[ok].bodies)
		delete(c.maps, ok)
	}
	c.maps[k] = m
	c.mapEntries += len(m.bodies)
	c.used = time.Now()
	if c.timer == nil {
		c.timer = time.AfterFunc(c.idle, c.dropIfIdle)
	}
}

type headerKey struct {
	body    int64
	summary bool // the summary, not the header
}

type headerEntry struct {
	key headerKey
	v   []byte // nil: the body has none
}

// entryOverhead is what an entry costs besides its bytes (map slot, list
// element, entry), roughly.
const entryOverhead = 120

// Defaults: room for the headers and summaries of some ten thousand
// messages; emptied a minute after the last use.
const (
	headerCacheBytes = 8 << 20
	headerCacheIdle  = time.Minute
)

func newHeaderCache(maxBytes int, idle time.Duration) *headerCache {
	return &headerCache{maxBytes: maxBytes, idle: idle, entries: map[headerKey]*list.Element{}, maps: map[mailboxKey]*bodyMap{}}
}

// get returns the cached value of k and whether there is one.
func (c *headerCache) get(k headerKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	c.used = time.Now()
	return e.Value.(*headerEntry).v, true
}

// put caches v (nil: the body has none) as k's value; v is kept as it
// is, and must not be changed by anyone afterwards.
func (c *headerCache) put(k headerKey, v []byte) {
	cost := len(v) + entryOverhead
	if cost > c.maxBytes/16 {
		return // one large value would push out many small ones
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if e, ok := c.entries[k]; ok {
		c.lru.MoveToFront(e)
		return
	}
	c.entries[k] = c.lru.PushFront(&headerEntry{key: k, v: slices.Clip(v)})
	c.bytes += cost
	for c.bytes > c.maxBytes {
		old := c.lru.Back()
		oe := old.Value.(*headerEntry)
		c.lru.Remove(old)
		delete(c.entries, oe.key)
		c.bytes -= len(oe.v) + entryOverhead
	}
	c.used = time.Now()
	if c.timer == nil {
		c.timer = time.AfterFunc(c.idle, c.dropIfIdle)
	}
}

// dropIfIdle empties the cache when it has not been used for idle, and
// otherwise looks again when it would be.
func (c *headerCache) dropIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer == nil {
		return
	}
	if left := c.idle - time.Since(c.used); left > 0 && !c.closed {
		c.timer.Reset(left)
		return
	}
	c.clearLocked()
}

func (c *headerCache) clearLocked() {
	c.entries = map[headerKey]*list.Element{} // the old one's room goes too
	c.lru.Init()
	c.bytes = 0
	c.maps, c.mapEntries = map[mailboxKey]*bodyMap{}, 0
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
}

// close empties the cache and stops its timer; nothing is cached after.
func (c *headerCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.clearLocked()
}

// size returns the number of entries and their cost in bytes, and the
// number of body maps.
func (c *headerCache) size() (n, bytes, maps int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.bytes, len(c.maps)
}
