package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Stored is the answer to a write: the record's key and times.
type Stored struct {
	Key       string    `json:"key"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Item is one entry of a listing.
type Item struct {
	Key       string    `json:"key"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Record is a stored record as read back. Data is kept raw so that a caller
// may decode it into whatever type it stored.
type Record struct {
	Key       string          `json:"key"`
	Data      json.RawMessage `json:"data"`
	Meta      map[string]any  `json:"meta"`
	CreatedAt time.Time       `json:"createdAt"`
	UpdatedAt time.Time       `json:"updatedAt"`
}

// Put stores data (any JSON-encodable value) under key for this device
// (POST /api/storage); meta may be nil. created is true for 201 (the key was
// new) and false for any other 2xx (200: the record was replaced). Either
// way the record is committed when Put returns no error.
func (c *Client) Put(ctx context.Context, key string, data any, meta map[string]any) (Stored, bool, error) {
	req := struct {
		Key  string         `json:"key"`
		Data any            `json:"data"`
		Meta map[string]any `json:"meta,omitempty"`
	}{key, data, meta}
	// Marshalled once, up front: a retry after a 401 must send the same bytes.
	body, err := json.Marshal(req)
	if err != nil {
		return Stored{}, false, fmt.Errorf("authsidecar: encode record %q: %w", key, err)
	}
	var out Stored
	status, err := c.do(ctx, http.MethodPost, "/api/storage", body, &out)
	if err != nil {
		return Stored{}, false, err
	}
	return out, status == http.StatusCreated, nil
}

// Get reads the record under key (GET /api/storage/{key}) and, when v is not
// nil, decodes its data into v. A missing key is ErrNotFound.
func (c *Client) Get(ctx context.Context, key string, v any) (Record, error) {
	var rec Record
	if _, err := c.do(ctx, http.MethodGet, "/api/storage/"+url.PathEscape(key), nil, &rec); err != nil {
		return Record{}, err
	}
	if v != nil && len(rec.Data) > 0 {
		if err := json.Unmarshal(rec.Data, v); err != nil {
			return rec, fmt.Errorf("authsidecar: decode data of %q: %w", key, err)
		}
	}
	return rec, nil
}

// List returns this device's records whose key starts with prefix
// (GET /api/storage?prefix=&limit=). limit <= 0 leaves the limit to the
// backend.
func (c *Client) List(ctx context.Context, prefix string, limit int) ([]Item, error) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/api/storage"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Items []Item `json:"items"`
	}
	if _, err := c.do(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// Delete removes the record under key (DELETE /api/storage/{key}). A missing
// key is ErrNotFound.
func (c *Client) Delete(ctx context.Context, key string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/storage/"+url.PathEscape(key), nil, nil)
	return err
}
