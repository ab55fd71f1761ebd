// The outline editor: move a building's vertices (draggable handles), insert one at an
// edge's midpoint, delete one; or draw a new polygon by clicking (to place the outline of
// a building not on the map, or to register a new building). A live preview in the
// `edit` GeoJSON source; Save PUTs the outline (or POSTs the new building) with If-Match.

import { call, problemText } from './api.js';
import { h } from './ui.js';

const CLOSE_PX = 14; // a click this close to the first vertex closes the polygon

function round(value) {
  return Math.round(value * 1e7) / 1e7;
}

function openRing(ring) {
  const copy = ring.map(([lon, lat]) => [lon, lat]);
  const [a, b] = [copy[0], copy[copy.length - 1]];
  if (copy.length > 1 && a[0] === b[0] && a[1] === b[1]) copy.pop();
  return copy;
}

function closedRing(ring) {
  const points = ring.map(([lon, lat]) => [round(lon), round(lat)]);
  return [...points, points[0]];
}

export class OutlineEditor {
  constructor(ctx) {
    this.ctx = ctx;
    this.active = false;
    this.mode = null; // 'draw' (clicking vertices) or 'edit' (moving them)
    this.purpose = null; // 'fix' | 'place' | 'new'
    this.building = null;
    this.polys = []; // [polygon][ring][vertex] = [lon, lat], rings open
    this.draft = []; // vertices while drawing
    this.markers = [];
    this.midpoints = [];
    this.selected = null; // [p, r, i] of the selected vertex
    this.saving = false;
    this.bar = document.getElementById('editor');
    this.hint = document.getElementById('editor-hint');
    this.buttons = {
      finish: document.getElementById('editor-finish'),
      undo: document.getElementById('editor-undo'),
      remove: document.getElementById('editor-delete'),
      save: document.getElementById('editor-save'),
      cancel: document.getElementById('editor-cancel'),
    };
    this.buttons.finish.addEventListener('click', () => this.finishDraw());
    this.buttons.undo.addEventListener('click', () => this.undo());
    this.buttons.remove.addEventListener('click', () => this.deleteSelected());
    this.buttons.save.addEventListener('click', () => this.save());
    this.buttons.cancel.addEventListener('click', () => this.cancel());
    document.addEventListener('keydown', (e) => {
      if (!this.active) return;
      if (e.key === 'Escape') this.cancel();
      else if (e.key === 'Enter' && this.mode === 'draw') this.finishDraw();
      else if ((e.key === 'Delete' || e.key === 'Backspace') && this.selected && e.target === document.body) this.deleteSelected();
    });
  }

  // ------------------------------------------------------------ modes

  /** Move the vertices of ``building``'s outline. */
  startEdit(building) {
    if (!building?.geometry) return;
    this.begin('fix', building);
    const g = building.geometry;
    const polys = g.type === 'Polygon' ? [g.coordinates] : g.coordinates;
    this.polys = polys.map((rings) => rings.map(openRing));
    this.enterEdit();
  }

  /** Click the vertices of a new outline: ``place`` for ``building`` (not on the map), or ``new``. */
  startDraw(purpose, building = null) {
    this.begin(purpose, building);
    this.mode = 'draw';
    this.draft = [];
    this.ctx.map.doubleClickZoom.disable();
    if (purpose === 'place' && building) this.ctx.flyToBuilding(building);
    this.refresh();
  }

  begin(purpose, building) {
    if (this.active) this.stop();
    this.active = true;
    this.purpose = purpose;
    this.building = building;
    this.polys = [];
    this.draft = [];
    this.selected = null;
    this.bar.hidden = false;
    document.getElementById('editor-new').hidden = purpose !== 'new';
    if (purpose === 'new') {
      for (const id of ['new-name', 'new-floors', 'new-use']) document.getElementById(id).value = '';
    }
    document.body.dataset.editor = purpose;
    if (window.matchMedia('(max-width: 699px)').matches) {
      // on a phone the bottom sheet would hide the outline: fold it while editing
      document.getElementById('panel').classList.add('collapsed');
    }
  }

  enterEdit() {
    this.mode = 'edit';
    this.ctx.map.doubleClickZoom.enable();
    this.placeMarkers();
    this.refresh();
  }

  /** Leave the editor, discarding the edit (Cancel restores the outline as saved). */
  cancel() {
    this.stop();
  }

  stop() {
    this.removeMarkers();
    this.active = false;
    this.mode = null;
    this.purpose = null;
    this.building = null;
    this.polys = [];
    this.draft = [];
    this.selected = null;
    this.bar.hidden = true;
    delete document.body.dataset.editor;
    this.ctx.map.doubleClickZoom.enable();
    this.ctx.map.getSource('edit').setData({ type: 'FeatureCollection', features: [] });
  }

  // ------------------------------------------------------------ drawing

  mapClick(e) {
    if (this.mode !== 'draw') return;
    const { map } = this.ctx;
    if (this.draft.length >= 3) {
      const first = map.project(this.draft[0]);
      if (Math.hypot(first.x - e.point.x, first.y - e.point.y) <= CLOSE_PX) {
        this.finishDraw();
        return;
      }
    }
    this.draft.push([e.lngLat.lng, e.lngLat.lat]);
    this.refresh();
  }

  undo() {
    if (this.mode === 'draw' && this.draft.length) {
      this.draft.pop();
      this.refresh();
    }
  }

  finishDraw() {
    if (this.mode !== 'draw') return;
    if (this.draft.length < 3) {
      this.ctx.showMessage('至少 3 个点 An outline needs at least 3 points.', 'error');
      return;
    }
    this.polys = [[this.draft]];
    this.draft = [];
    this.enterEdit();
  }

  // ------------------------------------------------------------ handles

  removeMarkers() {
    for (const m of [...this.markers, ...this.midpoints]) m.remove();
    this.markers = [];
    this.midpoints = [];
  }

  placeMarkers() {
    const { maplibregl, map } = this.ctx;
    this.removeMarkers();
    this.polys.forEach((rings, p) =>
      rings.forEach((ring, r) => {
        ring.forEach((vertex, i) => {
          const element = h('div', {
            class: `vertex${i === 0 && r === 0 && p === 0 ? ' first' : ''}`,
            'data-testid': `vertex-${p}-${r}-${i}`,
            title: '拖动移动；右键删除 Drag to move; right-click to delete',
          });
          const marker = new maplibregl.Marker({ element, draggable: true }).setLngLat(vertex).addTo(map);
          marker.on('drag', () => {
            const { lng, lat } = marker.getLngLat();
            ring[i] = [lng, lat];
            this.refresh({ midpoints: true });
          });
          marker.on('dragend', () => this.refresh({ midpoints: true }));
          element.addEventListener('click', (event) => {
            event.stopPropagation();
            this.select([p, r, i]);
          });
          element.addEventListener('contextmenu', (event) => {
            event.preventDefault();
            event.stopPropagation();
            this.select([p, r, i]);
            this.deleteSelected();
          });
          this.markers.push(marker);
        });
        ring.forEach((vertex, i) => {
          const element = h('div', {
            class: 'midpoint',
            'data-testid': `midpoint-${p}-${r}-${i}`,
            title: '点击插入顶点 Click to insert a vertex',
          });
          const marker = new maplibregl.Marker({ element }).setLngLat(this.midpointOf(ring, i)).addTo(map);
          element.addEventListener('click', (event) => {
            event.stopPropagation();
            ring.splice(i + 1, 0, this.midpointOf(ring, i));
            this.selected = null;
            this.placeMarkers();
            this.refresh();
          });
          marker.ring = ring;
          marker.index = i;
          this.midpoints.push(marker);
        });
      }),
    );
    this.markSelected();
  }

  midpointOf(ring, i) {
    const a = ring[i];
    const b = ring[(i + 1) % ring.length];
    return [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
  }

  select(where) {
    this.selected = where;
    this.markSelected();
  }

  markSelected() {
    for (const marker of this.markers) {
      const id = marker.getElement().dataset.testid;
      const on = this.selected && id === `vertex-${this.selected.join('-')}`;
      marker.getElement().classList.toggle('selected', Boolean(on));
    }
    this.refresh();
  }

  deleteSelected() {
    if (!this.selected) {
      this.ctx.showMessage('先点选一个顶点 Tap a vertex first, then delete it.', 'info');
      return;
    }
    const [p, r, i] = this.selected;
    const ring = this.polys[p]?.[r];
    if (!ring) return;
    if (ring.length <= 3) {
      this.ctx.showMessage('轮廓至少 3 个顶点 An outline keeps at least 3 vertices.', 'error');
      return;
    }
    ring.splice(i, 1);
    this.selected = null;
    this.placeMarkers();
    this.refresh();
  }

  // ------------------------------------------------------------ preview and state

  refresh({ midpoints = false } = {}) {
    if (!this.active) return;
    if (midpoints) {
      for (const m of this.midpoints) m.setLngLat(this.midpointOf(m.ring, m.index));
    }
    const features = [];
    if (this.mode === 'draw') {
      const d = this.draft;
      if (d.length >= 3) features.push(this.feature({ type: 'Polygon', coordinates: [[...d, d[0]]] }));
      else if (d.length === 2) features.push(this.feature({ type: 'LineString', coordinates: d }));
      d.forEach((c, i) => features.push(this.feature({ type: 'Point', coordinates: c }, { first: i === 0 })));
    } else if (this.mode === 'edit') {
      for (const rings of this.polys) {
        features.push(this.feature({ type: 'Polygon', coordinates: rings.map((ring) => [...ring, ring[0]]) }));
      }
    }
    this.ctx.map.getSource('edit').setData({ type: 'FeatureCollection', features });
    this.updateBar();
  }

  feature(geometry, properties = {}) {
    return { type: 'Feature', properties, geometry };
  }

  updateBar() {
    const drawing = this.mode === 'draw';
    const what = { fix: '修正轮廓 Fix outline', place: '绘制轮廓 Place outline', new: '新增楼栋 New building' }[this.purpose];
    const target = this.building ? ` · ${this.building.id}` : '';
    this.hint.textContent = drawing
      ? `${what}${target}: 在地图上逐点点击，点击第一个点或“完成”结束 (${this.draft.length} points). Click the corners; click the first point or Finish to close.`
      : `${what}${target}: 拖动顶点，点击边中点插入，选中后删除. Drag a vertex; click an edge's midpoint to add one; select one and Delete.`;
    this.buttons.finish.hidden = !drawing;
    this.buttons.undo.hidden = !drawing;
    this.buttons.remove.hidden = drawing;
    this.buttons.remove.disabled = !this.selected;
    this.buttons.save.hidden = drawing;
    this.buttons.finish.disabled = this.draft.length < 3;
    this.buttons.save.disabled = this.saving;
  }

  geometry() {
    const polys = this.polys.map((rings) => rings.map(closedRing));
    return polys.length === 1 ? { type: 'Polygon', coordinates: polys[0] } : { type: 'MultiPolygon', coordinates: polys };
  }

  // ------------------------------------------------------------ saving

  async save() {
    if (!this.active || this.mode !== 'edit' || this.saving) return;
    const { panel } = this.ctx;
    this.saving = true;
    this.updateBar();
    try {
      if (this.purpose === 'new') {
        await this.saveNew();
        return;
      }
      const id = this.building.id;
      const result = await call('PUT', `/buildings/${encodeURIComponent(id)}/geometry`, {
        json: this.geometry(),
        ifMatch: this.ctx.state.etag,
      });
      if (result.ok) {
        this.stop();
        panel.afterWrite(result, null, '轮廓已保存 Outline saved.');
      } else {
        // the edit stays on the map: the officer can reload, or save it again
        panel.afterWrite(result, () => this.save(), '');
      }
    } finally {
      this.saving = false;
      if (this.active) this.updateBar();
    }
  }

  async saveNew() {
    const body = { geometry: this.geometry() };
    const name = document.getElementById('new-name').value.trim();
    const floors = document.getElementById('new-floors').value.trim();
    const use = document.getElementById('new-use').value;
    if (name) body.name = name;
    if (floors) {
      const n = Number(floors);
      if (!Number.isInteger(n) || n < 1 || n > 200) {
        this.ctx.showMessage('层数须为 1–200 的整数 Floors must be a whole number from 1 to 200.', 'error');
        return;
      }
      body.floors = n;
    }
    if (use) body.use = use;
    const position = await this.ctx.currentPosition();
    if (position) body.position = { lon: position.lon, lat: position.lat, accuracy: position.accuracy };
    const result = await call('POST', '/buildings', { json: body });
    if (!result.ok) {
      this.ctx.showMessage(`未保存 Not saved: ${problemText(result)}`, 'error');
      return;
    }
    this.stop();
    this.ctx.selectTab('building');
    this.ctx.panel.afterWrite(result, null, `已登记 Registered ${result.data.building?.id ?? ''}.`);
  }
}
