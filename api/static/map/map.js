// The officers' web map: the registry's own vector tiles in MapLibre GL JS (vendored),
// a building panel with the field actions, an outline editor, the work list and the
// community's progress. Everything comes from this server (see docs/web-map.md).

import * as maplibregl from '/static/vendor/maplibre/maplibre-gl.mjs';
import { call, get, problemText, setCsrf } from './api.js';
import { OutlineEditor } from './editor.js';
import { Lists } from './lists.js';
import { BuildingPanel } from './panel.js';
import { showMessage } from './ui.js';

const BUILDING_LAYERS = ['buildings-fill', 'buildings-demolished'];
const RATE_RAMP = [0, '#d7191c', 0.5, '#fdae61', 0.8, '#ffffbf', 0.9, '#a6d96a', 1, '#1a9641'];
const STATE_COLOURS = [
  'match', ['get', 'verification'],
  'verified', '#2e7d32',
  'corrected', '#1565c0',
  'not_found', '#c62828',
  'disputed', '#ef6c00',
  '#9e9e9e',
];

const state = {
  config: null,
  community: null, // the chosen community's code
  rate: 'on_map_rate',
  tileVersion: 0,
  position: null, // {lon, lat, accuracy, time}
  building: null, // the open building's detail
  etag: null,
};

let resolveReady;
let rejectReady;
const ready = new Promise((resolve, reject) => {
  resolveReady = resolve;
  rejectReady = reject;
});
ready.catch(() => {}); // a failed start is shown on the page, never an unhandled rejection

window.registryMap = { ready, state, BUILDING_LAYERS };

function setBodyState(value) {
  document.body.dataset.state = value;
}

// ---------------------------------------------------------------- device position

function rememberPosition(p) {
  const first = !state.position;
  state.position = {
    lon: p.coords.longitude,
    lat: p.coords.latitude,
    accuracy: p.coords.accuracy,
    time: Date.now(),
  };
  ctx.map?.getSource('position')?.setData(positionData());
  if (first && state.community) ctx.lists?.loadWorklist(); // now nearest first
}

function positionData() {
  const p = state.position;
  return {
    type: 'FeatureCollection',
    features: p ? [{ type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: [p.lon, p.lat] } }] : [],
  };
}

function watchPosition() {
  if (!('geolocation' in navigator)) return;
  try {
    navigator.geolocation.watchPosition(rememberPosition, () => {}, {
      enableHighAccuracy: true,
      maximumAge: 30000,
      timeout: 20000,
    });
  } catch {
    // no position: the actions are sent without one
  }
}

/** The device position if known within a few seconds, else null: never blocks an action. */
function currentPosition(timeoutMs = 4000) {
  const known = state.position;
  if (known && Date.now() - known.time < 60000) return Promise.resolve(known);
  if (!('geolocation' in navigator)) return Promise.resolve(null);
  return new Promise((resolve) => {
    let done = false;
    const finish = (value) => {
      if (!done) {
        done = true;
        resolve(value);
      }
    };
    const timer = setTimeout(() => finish(state.position), timeoutMs);
    try {
      navigator.geolocation.getCurrentPosition(
        (p) => {
          clearTimeout(timer);
          rememberPosition(p);
          finish(state.position);
        },
        () => {
          clearTimeout(timer);
          finish(state.position);
        },
        { enableHighAccuracy: true, timeout: timeoutMs, maximumAge: 60000 },
      );
    } catch {
      clearTimeout(timer);
      finish(state.position);
    }
  });
}

// ---------------------------------------------------------------- the map

function tilesUrl() {
  // not new URL(): it would percent-encode the {z}/{x}/{y} placeholders
  const template = state.config.tiles;
  const base = /^https?:/.test(template) ? template : location.origin + template;
  return state.tileVersion ? `${base}?v=${state.tileVersion}` : base;
}

function rateColour(rate) {
  return [
    'case',
    ['has', rate],
    ['interpolate', ['linear'], ['to-number', ['get', rate], 0], ...RATE_RAMP],
    '#bdbdbd',
  ];
}

function emptyCollection() {
  return { type: 'FeatureCollection', features: [] };
}

function buildStyle(config) {
  const sources = {
    registry: {
      type: 'vector',
      tiles: [tilesUrl()],
      minzoom: 8,
      maxzoom: 18,
    },
    selection: { type: 'geojson', data: emptyCollection() },
    edit: { type: 'geojson', data: emptyCollection() },
    position: { type: 'geojson', data: emptyCollection() },
  };
  const layers = [{ id: 'background', type: 'background', paint: { 'background-color': '#eeeae2' } }];
  if (config.basemap && config.basemap.url) {
    // an XYZ template; Leaflet-style {s} subdomains become three tile URLs
    const url = config.basemap.url;
    const tiles = url.includes('{s}') ? ['a', 'b', 'c'].map((s) => url.replace('{s}', s)) : [url];
    sources.basemap = {
      type: 'raster',
      tiles,
      tileSize: 256,
      attribution: config.basemap.attribution || '',
    };
    layers.push({ id: 'basemap', type: 'raster', source: 'basemap' });
  }
  const opaque = config.basemap ? 0.25 : 0.35;
  layers.push(
    {
      id: 'communities-fill',
      type: 'fill',
      source: 'registry',
      'source-layer': 'communities',
      paint: {
        'fill-color': rateColour(state.rate),
        'fill-opacity': ['interpolate', ['linear'], ['zoom'], 12, opaque, 17, opaque / 2.5],
      },
    },
    {
      id: 'communities-line',
      type: 'line',
      source: 'registry',
      'source-layer': 'communities',
      paint: { 'line-color': '#37474f', 'line-width': 2, 'line-opacity': 0.8 },
    },
    {
      id: 'communities-current',
      type: 'line',
      source: 'registry',
      'source-layer': 'communities',
      filter: ['==', ['get', 'code'], ''],
      paint: { 'line-color': '#263238', 'line-width': 4 },
    },
    {
      id: 'gaps-fill',
      type: 'fill',
      source: 'registry',
      'source-layer': 'coverage-gaps',
      minzoom: 12,
      paint: { 'fill-color': '#d32f2f', 'fill-opacity': 0.18 },
    },
    {
      id: 'gaps-line',
      type: 'line',
      source: 'registry',
      'source-layer': 'coverage-gaps',
      minzoom: 12,
      paint: { 'line-color': '#d32f2f', 'line-width': 2, 'line-dasharray': [2, 1.5] },
    },
    {
      id: 'buildings-fill',
      type: 'fill',
      source: 'registry',
      'source-layer': 'buildings',
      minzoom: 12,
      filter: ['!=', ['get', 'status'], 'demolished'],
      paint: { 'fill-color': STATE_COLOURS, 'fill-opacity': 0.75 },
    },
    {
      id: 'buildings-demolished',
      type: 'fill',
      source: 'registry',
      'source-layer': 'buildings',
      minzoom: 12,
      filter: ['==', ['get', 'status'], 'demolished'],
      paint: { 'fill-pattern': 'hatch', 'fill-opacity': 0.9 },
    },
    {
      id: 'buildings-line',
      type: 'line',
      source: 'registry',
      'source-layer': 'buildings',
      minzoom: 12,
      paint: {
        'line-color': ['case', ['==', ['get', 'status'], 'demolished'], '#212121', '#ffffff'],
        'line-width': ['case', ['==', ['get', 'status'], 'demolished'], 2.5, 1],
      },
    },
    {
      id: 'buildings-construction',
      type: 'line',
      source: 'registry',
      'source-layer': 'buildings',
      minzoom: 12,
      filter: ['==', ['get', 'status'], 'under_construction'],
      paint: { 'line-color': '#6d4c41', 'line-width': 2, 'line-dasharray': [2, 1] },
    },
    {
      id: 'addresses',
      type: 'circle',
      source: 'registry',
      'source-layer': 'addresses',
      minzoom: 15,
      paint: {
        'circle-radius': ['interpolate', ['linear'], ['zoom'], 15, 2.5, 19, 5],
        'circle-color': '#4a148c',
        'circle-stroke-color': '#ffffff',
        'circle-stroke-width': 1,
      },
    },
    {
      id: 'selection-line',
      type: 'line',
      source: 'selection',
      paint: { 'line-color': '#ffd600', 'line-width': 4 },
    },
    {
      id: 'selection-casing',
      type: 'line',
      source: 'selection',
      paint: { 'line-color': '#212121', 'line-width': 1 },
    },
    {
      id: 'edit-fill',
      type: 'fill',
      source: 'edit',
      filter: ['==', ['geometry-type'], 'Polygon'],
      paint: { 'fill-color': '#1565c0', 'fill-opacity': 0.25 },
    },
    {
      id: 'edit-line',
      type: 'line',
      source: 'edit',
      filter: ['!=', ['geometry-type'], 'Point'],
      paint: { 'line-color': '#0d47a1', 'line-width': 2.5, 'line-dasharray': [2, 1] },
    },
    {
      id: 'edit-points',
      type: 'circle',
      source: 'edit',
      filter: ['==', ['geometry-type'], 'Point'],
      paint: {
        'circle-radius': 6,
        'circle-color': ['case', ['get', 'first'], '#2e7d32', '#ffffff'],
        'circle-stroke-color': '#0d47a1',
        'circle-stroke-width': 2,
      },
    },
    {
      id: 'position',
      type: 'circle',
      source: 'position',
      paint: {
        'circle-radius': 7,
        'circle-color': '#2962ff',
        'circle-stroke-color': '#ffffff',
        'circle-stroke-width': 2,
      },
    },
  );
  return { version: 8, sources, layers };
}

function hatchImage() {
  const size = 8;
  const data = new Uint8Array(size * size * 4);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = (y * size + x) * 4;
      const ink = (x + y) % size < 2;
      data.set(ink ? [66, 66, 66, 255] : [255, 255, 255, 200], i);
    }
  }
  return { width: size, height: size, data };
}

const narrow = () => window.matchMedia('(max-width: 699px)').matches;

/** Padding for fitting bounds: on a phone, keep clear of the bottom sheet. */
function fitPadding(base = 30) {
  if (!narrow()) return base;
  const sheet = document.getElementById('panel');
  const covered = sheet.classList.contains('collapsed') ? 56 : Math.round(window.innerHeight * 0.45);
  return { top: base, left: base, right: base, bottom: covered + base };
}

// ---------------------------------------------------------------- the controller

let picking = null; // a function awaiting the next tap on the map (a door plate's place)

const ctx = {
  state,
  map: null,
  maplibregl,
  currentPosition,
  showMessage,
  fitPadding,
  refreshTiles() {
    state.tileVersion += 1;
    setBodyState('busy');
    ctx.map.getSource('registry').setTiles([tilesUrl()]);
  },
  /** The next tap on the map goes to ``place(lngLat)`` instead of selecting (null: cancel). */
  pickPoint(place) {
    picking = place;
    ctx.map.getCanvas().style.cursor = place ? 'crosshair' : '';
  },
  setSelection(geometry) {
    const data = geometry
      ? { type: 'FeatureCollection', features: [{ type: 'Feature', properties: {}, geometry }] }
      : emptyCollection();
    ctx.map.getSource('selection').setData(data);
  },
  /** After a 200/201 of an action: the panel, the progress, the tiles, the work list. */
  applyResult(result) {
    const { building, progress } = result.data;
    if (building) ctx.panel.show(building, result.etag || `"v${building.version}"`);
    if (progress) ctx.lists.showProgress(progress);
    ctx.refreshTiles();
    ctx.lists.loadWorklist();
  },
  async openBuilding(id, { fly = false } = {}) {
    ctx.selectTab('building');
    const detail = await ctx.panel.open(id);
    if (detail && fly) ctx.flyToBuilding(detail);
    return detail;
  },
  flyToBuilding(detail) {
    const geometry = detail.geometry;
    if (geometry) {
      const bounds = new maplibregl.LngLatBounds();
      const polys = geometry.type === 'Polygon' ? [geometry.coordinates] : geometry.coordinates;
      for (const poly of polys) for (const [lon, lat] of poly[0]) bounds.extend([lon, lat]);
      ctx.map.fitBounds(bounds, { padding: fitPadding(80), maxZoom: 18, duration: 600 });
    } else {
      const plate = (detail.addresses || []).find((a) => a.door_plate)?.door_plate;
      if (plate) ctx.map.flyTo({ center: plate, zoom: 17, duration: 600, padding: fitPadding(0) });
    }
  },
  selectTab(name) {
    for (const button of document.querySelectorAll('.tabs [data-tab]')) {
      const on = button.dataset.tab === name;
      button.setAttribute('aria-selected', String(on));
      document.getElementById(`tab-${button.dataset.tab}`).hidden = !on;
    }
    const panel = document.getElementById('panel');
    panel.classList.remove('collapsed');
    document.getElementById('sheet-toggle').setAttribute('aria-expanded', 'true');
  },
};

function chooseCommunity(code, { fit = true } = {}) {
  const community = state.config.communities.find((c) => c.code === code);
  if (!community) return;
  state.community = code;
  document.getElementById('community-name').textContent = community.name;
  document.getElementById('community').value = code;
  ctx.map.setFilter('communities-current', ['==', ['get', 'code'], code]);
  if (fit) {
    if (community.bbox) {
      const [w, s, e, n] = community.bbox;
      ctx.map.fitBounds([[w, s], [e, n]], { padding: fitPadding(), duration: 0, maxZoom: 18 });
    } else {
      showMessage(`${community.name} has no boundary on the map yet.`, 'info');
    }
  }
  ctx.lists.loadProgress();
  ctx.lists.loadWorklist();
}

function buildingAt(point) {
  const pad = 4;
  const box = [
    [point.x - pad, point.y - pad],
    [point.x + pad, point.y + pad],
  ];
  const exact = ctx.map.queryRenderedFeatures(point, { layers: BUILDING_LAYERS });
  const near = exact.length ? exact : ctx.map.queryRenderedFeatures(box, { layers: BUILDING_LAYERS });
  return near.length ? near[0].properties.id : null;
}

function wireHeader(config) {
  const who = config.user;
  document.getElementById('user').textContent = `${who.name} · ${who.role}`;
  const select = document.getElementById('community');
  for (const c of config.communities) {
    select.append(new Option(`${c.name} ${c.code}`, c.code));
  }
  document.getElementById('community-field').hidden = config.communities.length < 2;
  select.addEventListener('change', () => chooseCommunity(select.value));

  const rate = document.getElementById('rate');
  const legendRate = document.getElementById('legend-rate-name');
  legendRate.textContent = rate.selectedOptions[0].textContent;
  rate.addEventListener('change', () => {
    state.rate = rate.value;
    ctx.map.setPaintProperty('communities-fill', 'fill-color', rateColour(rate.value));
    legendRate.textContent = rate.selectedOptions[0].textContent;
  });

  document.getElementById('logout').addEventListener('click', async () => {
    const result = await call('POST', '/logout');
    if (result.ok || result.status === 401) window.location.assign('/login?next=/map');
    else showMessage(`Sign-out failed: ${problemText(result)}`, 'error');
  });

  const draw = document.getElementById('draw-new');
  draw.hidden = !config.may_edit;
  draw.addEventListener('click', () => ctx.editor.startDraw('new'));

  for (const button of document.querySelectorAll('.tabs [data-tab]')) {
    button.addEventListener('click', () => ctx.selectTab(button.dataset.tab));
  }
  const panel = document.getElementById('panel');
  const toggle = document.getElementById('sheet-toggle');
  toggle.addEventListener('click', () => {
    const collapsed = panel.classList.toggle('collapsed');
    toggle.setAttribute('aria-expanded', String(!collapsed));
  });
  if (narrow()) {
    document.getElementById('legend').open = false;
    document.getElementById('progress').open = false; // its summary keeps the verified rate
  }
}

async function start() {
  const result = await get('/map/config');
  if (!result.ok) {
    if (result.status !== 401) showMessage(`The map could not start: ${problemText(result)}`, 'error', { timeout: 0 });
    setBodyState('error');
    rejectReady(new Error(problemText(result)));
    return;
  }
  const config = result.data;
  state.config = config;
  setCsrf(config.csrf_token);
  window.registryMap.config = config;
  wireHeader(config);
  watchPosition();

  const first = config.communities.find((c) => c.bbox) || config.communities[0];
  const options = {
    container: 'map',
    style: buildStyle(config),
    attributionControl: config.basemap ? { compact: true } : false,
    dragRotate: false,
    pitchWithRotate: false,
    touchPitch: false,
    center: [114.395, 30.508],
    zoom: 14,
    maxZoom: 21,
    minZoom: 3,
  };
  if (first?.bbox) {
    const [w, s, e, n] = first.bbox;
    options.bounds = [[w, s], [e, n]];
    options.fitBoundsOptions = { padding: fitPadding(), maxZoom: 18 };
  }
  const map = new maplibregl.Map(options);
  ctx.map = map;
  window.registryMap.map = map;
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-right');

  map.on('styleimagemissing', (e) => {
    if (e.id === 'hatch' && !map.hasImage('hatch')) map.addImage('hatch', hatchImage());
  });
  map.on('error', (e) => {
    const message = e?.error?.message || 'map error';
    if (/abort/i.test(message)) return;
    window.registryMap.errors = [...(window.registryMap.errors || []), message];
    showMessage(`Map: ${message}`, 'error');
  });
  map.on('dataloading', () => setBodyState('busy'));
  map.on('idle', () => setBodyState('idle'));

  ctx.panel = new BuildingPanel(ctx);
  ctx.lists = new Lists(ctx);
  ctx.editor = new OutlineEditor(ctx);
  Object.assign(window.registryMap, {
    maplibregl,
    panel: ctx.panel,
    lists: ctx.lists,
    editor: ctx.editor,
    openBuilding: (id) => ctx.openBuilding(id),
    refreshTiles: () => ctx.refreshTiles(),
    idle: () => idle(map),
    /** Move the map and resolve once it has drawn the new view. */
    jumpAndIdle: (options) =>
      new Promise((resolve) => {
        map.once('idle', () => resolve());
        if (options.bounds) map.fitBounds(options.bounds, { padding: options.padding ?? 60, duration: 0, maxZoom: options.maxZoom ?? 20 });
        else map.jumpTo(options);
      }),
    renderedBuildings: () =>
      map.queryRenderedFeatures({ layers: BUILDING_LAYERS }).map((f) => ({ ...f.properties })),
    pointInside: (layer, id) => pointInside(map, layer, id),
    sourceBounds: (sourceLayer, id) => sourceBounds(map, sourceLayer, id),
  });

  map.on('click', (e) => {
    if (picking) {
      const place = picking;
      picking = null;
      map.getCanvas().style.cursor = '';
      place(e.lngLat);
      return;
    }
    if (ctx.editor.active) {
      ctx.editor.mapClick(e);
      return;
    }
    const id = buildingAt(e.point);
    if (id) ctx.openBuilding(id);
  });
  map.on('mousemove', (e) => {
    if (picking) {
      map.getCanvas().style.cursor = 'crosshair';
      return;
    }
    if (ctx.editor.active) {
      map.getCanvas().style.cursor = ctx.editor.mode === 'draw' ? 'crosshair' : '';
      return;
    }
    map.getCanvas().style.cursor = buildingAt(e.point) ? 'pointer' : '';
  });

  await new Promise((resolve) => {
    if (map.loaded()) resolve();
    else map.once('load', resolve);
  });
  if (!map.hasImage('hatch')) map.addImage('hatch', hatchImage());
  map.getSource('position').setData(positionData());
  if (!config.communities.length) {
    showMessage('No community is in your jurisdiction.', 'info', { timeout: 0 });
  } else {
    chooseCommunity(first.code, { fit: false });
  }
  await idle(map);
  resolveReady(window.registryMap);
}

/** Resolves when the map has drawn everything it is loading. */
function idle(map) {
  return new Promise((resolve) => {
    const settled = () => map.loaded() && map.areTilesLoaded() && !map.isMoving();
    if (settled()) {
      resolve();
      return;
    }
    map.once('idle', () => resolve());
  });
}

// ---------------------------------------------------------------- test and geometry helpers

function insideRing(x, y, ring) {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i];
    const [xj, yj] = ring[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function insidePolygon(x, y, rings) {
  return insideRing(x, y, rings[0]) && !rings.slice(1).some((hole) => insideRing(x, y, hole));
}

/** A screen point (page coordinates) inside the rendered feature ``id`` of ``layer``, where
 *  that feature is the topmost building: for clicking it in a test. */
function pointInside(map, layer, id) {
  const features = map.queryRenderedFeatures({ layers: [layer] }).filter((f) => f.properties.id === id);
  const rect = map.getContainer().getBoundingClientRect();
  for (const feature of features) {
    const g = feature.geometry;
    const polys = g.type === 'Polygon' ? [g.coordinates] : g.type === 'MultiPolygon' ? g.coordinates : [];
    for (const rings of polys) {
      const screen = rings.map((ring) => ring.map((c) => map.project(c)).map((p) => [p.x, p.y]));
      const xs = screen[0].map((p) => p[0]);
      const ys = screen[0].map((p) => p[1]);
      const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
      const candidates = [[(x0 + x1) / 2, (y0 + y1) / 2]];
      for (let i = 1; i < 8; i++) for (let j = 1; j < 8; j++) candidates.push([x0 + ((x1 - x0) * i) / 8, y0 + ((y1 - y0) * j) / 8]);
      for (const [x, y] of candidates) {
        if (x < 2 || y < 2 || x > rect.width - 2 || y > rect.height - 2) continue;
        if (!insidePolygon(x, y, screen)) continue;
        if (document.elementFromPoint(rect.left + x, rect.top + y) !== map.getCanvas()) continue;
        const top = map.queryRenderedFeatures([x, y], { layers: BUILDING_LAYERS });
        if (top.length && top[0].properties.id === id) return { x: rect.left + x, y: rect.top + y };
      }
    }
  }
  return null;
}

/** [w, s, e, n] of every loaded tile piece of feature ``id`` in ``sourceLayer``. */
function sourceBounds(map, sourceLayer, id) {
  const pieces = map
    .querySourceFeatures('registry', { sourceLayer })
    .filter((f) => f.properties.id === id);
  if (!pieces.length) return null;
  const b = [Infinity, Infinity, -Infinity, -Infinity];
  for (const f of pieces) {
    const g = f.geometry;
    const polys = g.type === 'Polygon' ? [g.coordinates] : g.coordinates;
    for (const poly of polys) {
      for (const [lon, lat] of poly[0]) {
        b[0] = Math.min(b[0], lon);
        b[1] = Math.min(b[1], lat);
        b[2] = Math.max(b[2], lon);
        b[3] = Math.max(b[3], lat);
      }
    }
  }
  return b;
}

start().catch((err) => {
  setBodyState('error');
  showMessage(`The map could not start: ${err.message}`, 'error', { timeout: 0 });
  rejectReady(err);
});
