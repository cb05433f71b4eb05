import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

const EDITOR = '.o_field_widget[name="body_arch"]';

/**
 * A marketer opens the shipped cart email in the mass-mailing editor,
 * rewrites the text above the cart lines, inserts the "Recommended
 * products" block after the restore button, saves and starts the sequence.
 */
registry.category("web_tour.tours").add("behavioral_email_editor_tour", {
    url: "/odoo/action-behavioral_email.behavioral_sequence_action",
    steps: () => [
        {
            content: "Open the abandoned cart sequence",
            trigger: ".o_data_row:contains(Abandoned cart recovery) td[name=name]",
            run: "click",
        },
        {
            content: "Open its first email",
            trigger:
                ".o_field_widget[name=step_ids] .o_data_row:contains(You left something in your cart) td.o_list_record_open_form_view button",
            run: "click",
        },
        {
            content: "The editor shows the email and its dynamic blocks",
            trigger: `${EDITOR} :iframe .o_behavioral_block[data-behavioral-block=cart_lines] .o_behavioral_block_content[contenteditable=false]`,
            // the editor's frame builds its own asset bundles on first use
            timeout: 60000,
        },
        {
            content: "The Shop content blocks are offered",
            trigger: `${EDITOR} #behavioral_email_blocks [name="Recommended products"] .oe_snippet_thumbnail`,
            timeout: 30000,
        },
        {
            content: "Rewrite the text above the cart lines",
            trigger: `${EDITOR} :iframe .o_editable p:contains(You left these items)`,
            run: "editor Your basket is waiting for you, all of it:",
        },
        {
            content: "Back to the blocks",
            trigger: `${EDITOR} .o_we_add_snippet_btn`,
            run: "click",
        },
        {
            content: "Drag the recommended products block after the restore button",
            trigger: `${EDITOR} #behavioral_email_blocks [name="Recommended products"] .oe_snippet_thumbnail`,
            async run(helpers) {
                // the editor places the drop by the pointer's position in the page
                const iframe = document.querySelector(`${EDITOR} iframe.wysiwyg_iframe`);
                const target = ".o_behavioral_block[data-behavioral-block=restore_cart]";
                const frame = iframe.getBoundingClientRect();
                const rect = iframe.contentDocument.querySelector(target).getBoundingClientRect();
                await helpers.drag_and_drop(`${EDITOR} :iframe ${target}`, {
                    position: {
                        x: frame.x + rect.x + rect.width / 2,
                        y: frame.y + rect.y + rect.height - 4,
                    },
                });
            },
        },
        {
            content: "Wait for the editor to finish the drop",
            trigger: "body:not(:has(.o_we_ongoing_insertion))",
        },
        {
            content: "The block is in the email, as one piece the editor cannot enter",
            trigger: `${EDITOR} :iframe .o_behavioral_block[data-behavioral-block=recommended_products] .o_behavioral_block_content[contenteditable=false]`,
        },
        ...stepUtils.saveForm(),
        {
            content: "Back to the sequence",
            trigger: ".o_breadcrumb a:contains(Abandoned cart recovery)",
            run: "click",
        },
        {
            content: "Start the sequence",
            trigger: ".o_form_statusbar button[name=action_start]:not(:disabled)",
            run: "click",
        },
        {
            content: "It is running",
            trigger: ".o_statusbar_status button.o_arrow_button_current:contains(Running)",
        },
    ],
});
