// Small DOM helpers: elements without innerHTML (API text is never parsed as HTML),
// messages, and number formatting.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function showMessage(text, kind = 'info', { timeout } = {}) {
  const box = document.getElementById('messages');
  const close = h('button', { type: 'button', 'aria-label': '关闭 Close' }, '×');
  const message = h(
    'div',
    { class: `message ${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-testid': `message-${kind}` },
    h('span', {}, text),
    close,
  );
  close.addEventListener('click', () => message.remove());
  box.append(message);
  while (box.children.length > 4) box.firstElementChild.remove();
  const ms = timeout ?? (kind === 'error' ? 12000 : 5000);
  if (ms > 0) setTimeout(() => message.remove(), ms);
  return message;
}

export function percent(rate) {
  if (rate === null || rate === undefined) return '—';
  return `${(rate * 100).toFixed(1)}%`;
}

export function count(value) {
  return value === null || value === undefined ? '—' : String(value);
}

export function when(value) {
  if (!value) return '—';
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleString('zh-CN', { hour12: false });
}

export function metres(value) {
  if (value === null || value === undefined) return '';
  return value >= 1000 ? `${(value / 1000).toFixed(1)} km` : `${Math.round(value)} m`;
}

export const STATE_NAMES = {
  unverified: '未核实 unverified',
  verified: '已核实 verified',
  corrected: '已更正 corrected',
  not_found: '未找到 not found',
  disputed: '有争议 disputed',
};

export const ACTION_NAMES = {
  ...STATE_NAMES,
  demolition_confirmed: '确认拆除 demolition confirmed',
  demolition_rejected: '驳回拆除 demolition rejected',
  created: '新登记 registered',
  door_plate_moved: '门牌已放置 door plate placed',
};

export const STATUS_NAMES = {
  in_use: '在用 in use',
  under_construction: '在建 under construction',
  demolished: '已拆除 demolished',
};

export const KIND_NAMES = {
  not_on_map: '未上图 not on map',
  never_verified: '未核实 never verified',
  stale: '过期 stale',
  disputed: '有争议 disputed',
  not_found: '待确认 not found',
  unlabeled: '无门牌 unlabeled',
  gap: '缺口 gap',
};
