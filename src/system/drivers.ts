// The block drivers a VM offers beyond src/block's built-in ones. qcow2 registers itself when its
// module loads (src/block cannot import its own format subdirectory's driver without a cycle), so
// the system layer imports it once here: `blockdev-add driver=qcow2`, `-blockdev driver=qcow2`
// and query-block's supported formats all see it from then on.
import '../block/qcow2/driver.js';
