/*
 * How a fragment names the node it patches.
 *
 * Raspberry Pi OS firmware resolves labels through the base DTB's
 * __symbols__ node, so the Pi OS build (default) targets labels.
 * Debian's kernel DTBs carry no __symbols__, so for fdtoverlay at image
 * build time (-DSKYTIME_PATH_TARGETS) fragments target absolute paths and
 * the GPIO controller's phandle is passed in as SKYTIME_GPIO_PHANDLE
 * (read from the base DTB with fdtget).
 */
#ifdef SKYTIME_PATH_TARGETS
#define SKYTIME_TARGET(lbl, node) target-path = #node
#define SKYTIME_GPIO_REF SKYTIME_GPIO_PHANDLE
#else
#define SKYTIME_TARGET(lbl, node) target = <&lbl>
#define SKYTIME_GPIO_REF &gpio
#endif
