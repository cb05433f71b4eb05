import { registry } from "@web/core/registry";

/**
 * A customer on their email preference page (reached from the link of an
 * email or from the portal): turns "Cart reminders" off, asks for at most one
 * email a week, pauses everything for a month, and saves. The page is a plain
 * form: saving reloads it with a confirmation.
 */
function inAMonth() {
    const day = new Date();
    day.setDate(day.getDate() + 30);
    const pad = (n) => String(n).padStart(2, "0");
    return `${day.getFullYear()}-${pad(day.getMonth() + 1)}-${pad(day.getDate())}`;
}

registry.category("web_tour.tours").add("behavioral_email_preferences_tour", {
    steps: () => [
        {
            content: "The page lists the topics, checked",
            trigger: ".o_behavioral_topic:contains(Cart reminders) input[type=checkbox]:checked",
            run: "click",
        },
        {
            content: "Cart reminders are now off",
            trigger: ".o_behavioral_topic:contains(Cart reminders) input[type=checkbox]:not(:checked)",
        },
        {
            content: "At most one email a week",
            trigger: "input[name=frequency][value=weekly]",
            run: "click",
        },
        {
            content: "Pause everything for a month",
            trigger: "input[name=pause_until]",
            run() {
                this.anchor.value = inAMonth();
                this.anchor.dispatchEvent(new Event("input", { bubbles: true }));
                this.anchor.dispatchEvent(new Event("change", { bubbles: true }));
            },
        },
        {
            content: "Save",
            trigger: "button.o_behavioral_save",
            run: "click",
            expectUnloadPage: true,
        },
        {
            content: "The page confirms",
            trigger: ".o_behavioral_message",
        },
        {
            content: "and shows the choices kept",
            trigger: "input[name=frequency][value=weekly]:checked",
        },
        {
            trigger: ".o_behavioral_topic:contains(Cart reminders) input[type=checkbox]:not(:checked)",
        },
        {
            trigger: "input[name=pause_until]",
            run() {
                if (this.anchor.value !== inAMonth()) {
                    throw new Error(`The pause date was not kept: "${this.anchor.value}"`);
                }
            },
        },
        {
            content: "and the changes in the history",
            trigger: ".o_behavioral_history li:contains(Frequency changed)",
        },
    ],
});
